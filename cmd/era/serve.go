package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/era-go/era"
	"github.com/era-go/era/nbd"
)

var serveCommand = &command{
	name:     "serve",
	synopsis: "serve --meta FILE --image FILE [--block-sectors N] [--format] [--name EXPORT] [--socket PATH | --listen HOST:PORT] [--control PATH] [--snapshot-store FILE] [--read-only]",
	summary:  "serve an image over NBD, tracking its writes by era",
	help: `Opens the era device over the metadata FILE and the image FILE and serves
it as an NBD export, so QEMU, the kernel's nbd client, libnbd tools and
backup programs read and write it while every write is tracked. It prints
the export's NBD URI on standard output and serves until SIGINT or SIGTERM,
then answers the requests under way, closes the device and exits 0.

The export offers the meta contexts base:allocation,
x-era:written-since:N (bit 0: written in era N or later), x-era:era (the
era of each extent) and qemu:dirty-bitmap:era-N (the same bits as
x-era:written-since:N, for tools that take a QEMU bitmap name).

Options:
      --meta FILE        the era metadata (a file or device)
      --image FILE       the image (origin) served
      --block-sectors N  tracked block size in 512-byte sectors (a multiple
                         of 8); default: the metadata's, or 128 when formatting
      --format           format the metadata when it is all zeroes
      --name EXPORT      the export name (default era)
      --socket PATH      serve on a unix socket (mode 0600; the default is
                         era.sock next to the metadata)
      --listen HOST:PORT serve on TCP, on that address only
      --control PATH     answer era message and era status on a unix socket
      --snapshot-store FILE
                         take_metadata_snap takes a point-in-time snapshot,
                         with FILE (created, truncated) as its difference
                         store, and offers the image as of the snapshot as
                         the read-only export NAME@snapshot, with the same
                         meta contexts answered from the snapshot's
                         metadata, until drop_metadata_snap
      --read-only        refuse writes
  -h, --help             show this help
  -V, --version          show the version
`,
	run: runServe,
}

func runServe(c *cmdEnv, args []string) int {
	fs, help, ver := c.flags()
	meta := fs.String("meta", "", "")
	image := fs.String("image", "", "")
	var sectors uint32Flag
	fs.Var(&sectors, "block-sectors", "")
	format := fs.Bool("format", false, "")
	name := fs.String("name", nbd.DefaultName, "")
	sock := fs.String("socket", "", "")
	listen := fs.String("listen", "", "")
	control := fs.String("control", "", "")
	readOnly := fs.Bool("read-only", false, "")
	snapStore := fs.String("snapshot-store", "", "")
	if _, status, done := c.parse(fs, help, ver, args, 0); done {
		return status
	}
	switch {
	case *meta == "":
		return c.usage("--meta is required")
	case *image == "":
		return c.usage("--image is required")
	case *sock != "" && *listen != "":
		return c.usage("--socket and --listen exclude each other")
	case *name == "" || len(*name) > 4096:
		return c.usage("the export name must be 1 to 4096 bytes")
	case sectors.set && (sectors.v == 0 || sectors.v%8 != 0):
		return c.usage("--block-sectors must be a positive multiple of 8")
	case *snapStore != "" && *control == "":
		return c.usage("--snapshot-store needs --control (take_metadata_snap comes through it)")
	}
	if *snapStore != "" {
		if abs, err := filepath.Abs(*snapStore); err == nil {
			*snapStore = abs
		}
	}
	if *sock == "" && *listen == "" {
		*sock = filepath.Join(filepath.Dir(*meta), "era.sock")
	}

	if abs, err := filepath.Abs(*meta); err == nil {
		*meta = abs
	}
	if abs, err := filepath.Abs(*image); err == nil {
		*image = abs
	}
	d, mf, imf, err := openServed(*meta, *image, sectors, *format, *readOnly)
	if err != nil {
		return c.fail(err)
	}
	closeDevice := func() error {
		err := d.Close()
		mf.Close()
		imf.Close()
		return err
	}

	var l net.Listener
	var uri string
	if *sock != "" {
		abs, err := filepath.Abs(*sock)
		if err == nil {
			l, err = listenUnix(abs)
		}
		if err != nil {
			closeDevice()
			return c.fail(fmt.Errorf("--socket: %w", err))
		}
		defer os.Remove(abs)
		uri = "nbd+unix:///" + url.PathEscape(*name) + "?socket=" + strings.ReplaceAll(url.QueryEscape(abs), "%2F", "/")
	} else {
		l, err = net.Listen("tcp", *listen)
		if err != nil {
			closeDevice()
			return c.fail(fmt.Errorf("--listen: %w", err))
		}
		uri = (&url.URL{Scheme: "nbd", Host: l.Addr().String(), Path: "/" + *name}).String()
	}

	srv := nbd.NewServer(d, nbd.Options{
		Name:        *name,
		Description: "image tracked by era",
		ReadOnly:    *readOnly,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(c.stderr, "%s: %s\n", c.prog, fmt.Sprintf(format, args...))
		},
	})

	var pit *pitServer
	if *snapStore != "" {
		pit = &pitServer{d: d, srv: srv, path: *snapStore, export: *name + snapshotSuffix}
	}
	var cs *controlServer
	if *control != "" {
		abs, err := filepath.Abs(*control)
		if err == nil {
			cs, err = serveControl(abs, func(line string) controlReply {
				return controlAnswer(d, srv, pit, line, &controlStatus{
					URI: uri, Export: *name, ReadOnly: *readOnly, MetadataPath: *meta, ImagePath: *image,
				})
			})
		}
		if err != nil {
			l.Close()
			closeDevice()
			return c.fail(fmt.Errorf("--control: %w", err))
		}
		defer os.Remove(abs)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fmt.Fprintln(c.stdout, uri)
	if f, ok := c.stdout.(*os.File); ok {
		f.Sync()
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shutErr := srv.Shutdown(sctx)
	if serveErr == nil {
		<-served
	}
	if cs != nil {
		cs.close()
	}
	if pit != nil && pit.held() {
		pit.drop() // the device's Close would drop it too
	}
	err = errors.Join(ignoreClosed(serveErr), shutErr, closeDevice())
	if err != nil {
		return c.fail(err)
	}
	return exitOK
}

func ignoreClosed(err error) error {
	if errors.Is(err, nbd.ErrServerClosed) {
		return nil
	}
	return err
}

// openServed opens the metadata and the image and the era device over them.
func openServed(meta, image string, sectors uint32Flag, format, readOnly bool) (*era.Device, *os.File, *os.File, error) {
	mf, err := openStore(meta, os.O_RDWR)
	if err != nil {
		return nil, nil, nil, err
	}
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	imf, err := openStore(image, flag)
	if err != nil {
		mf.Close()
		return nil, nil, nil, err
	}
	bs := sectors.v
	if !sectors.set {
		if v, err := era.OpenView(mf); err == nil {
			bs = v.BlockSectors()
		} else {
			bs = 128
		}
	}
	d, err := era.Open(mf, imf, era.Config{BlockSectors: bs, Format: format})
	switch {
	case errors.Is(err, era.ErrNoMetadata):
		err = fmt.Errorf("%w; --format formats it", err)
	case errors.Is(err, era.ErrLocked):
		err = fmt.Errorf("%w: another era serve or a backup tool owns the device; stop it, or back up through it (backup --external while it holds a metadata snapshot, or --nbd)", err)
	}
	if err != nil {
		mf.Close()
		imf.Close()
		return nil, nil, nil, fileError(meta, err)
	}
	return d, mf, imf, nil
}

// controlAnswer runs one control request against the device.
// With pit (--snapshot-store) the snapshot messages take and drop
// point-in-time snapshots.
func controlAnswer(d *era.Device, srv *nbd.Server, pit *pitServer, line string, st *controlStatus) controlReply {
	var began uint32
	var err error
	switch strings.ToLower(line) {
	case "checkpoint":
		began, err = d.Checkpoint()
	case "take_metadata_snap":
		if pit != nil {
			began, err = pit.take()
		} else {
			began, err = d.TakeSnapshot()
		}
	case "drop_metadata_snap":
		if pit != nil && pit.held() {
			err = pit.drop()
		} else {
			err = d.DropSnapshot()
		}
		began = d.CurrentEra()
	case "status":
		s := *st
		dm := d.Status()
		s.Size, s.BlockBytes, s.Blocks = d.Size(), d.BlockBytes(), d.NrBlocks()
		s.CurrentEra, s.Snapshot, s.DMStatus = dm.CurrentEra, dm.Held, dm.String()
		s.Connections = srv.Connections()
		s.Commits = d.Stats().Commits
		if pit != nil {
			pit.status(&s)
		}
		return controlReply{Era: s.CurrentEra, ChangeID: changeID(d, s.CurrentEra), Status: &s}
	default:
		return controlReply{Error: fmt.Sprintf("unknown request %q: want checkpoint, take_metadata_snap, drop_metadata_snap or status", line)}
	}
	if err != nil {
		return controlReply{Error: err.Error()}
	}
	return controlReply{Era: began, ChangeID: changeID(d, began)}
}

// changeID returns the text form of the change ID of era e of d.
func changeID(d *era.Device, e uint32) string {
	id := d.ChangeID()
	id.Era = e
	return id.String()
}
