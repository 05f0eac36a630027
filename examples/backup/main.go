// Command backup is a backup agent built on era: full and incremental image
// backups driven by the eras a dm-era style device records, restore to any
// backup, and verification of every stored chunk.
//
// Usage:
//
//	backup full    --repo DIR --meta FILE --image FILE [--external] [--block-sectors N]
//	backup incr    --repo DIR --meta FILE --image FILE [--external] [--block-sectors N]
//	backup full|incr --repo DIR --nbd URI --control PATH
//	backup restore --repo DIR --out FILE [--to N] [--verify] [--force]
//	backup verify  --repo DIR
//	backup list    --repo DIR
//	backup demo    [--size MiB] [--rounds N] [--writes N] [--seed N] [--dir DIR] [--keep] [--sync]
//
// Without --external the tool owns the era device: it opens the metadata
// and image with era.Open (creating and formatting the metadata file if it
// does not exist), takes a metadata snapshot, copies, drops the snapshot
// and closes the device. Nothing else may have the device open meanwhile.
//
// With --external another process (or the kernel's dm-era target) owns the
// device and keeps writing; it must hold a metadata snapshot for the
// duration of the backup. The tool only reads: the snapshot through
// era.OpenSnapshot on the metadata file, the blocks from the image.
//
// With --nbd the device is an era serve export: the tool takes and drops
// the metadata snapshot through era serve's control socket, asks for the
// blocks written since the last backup's era with NBD BLOCK_STATUS on the
// meta context x-era:written-since:N (in requests of at most 32 MiB), and
// reads them with NBD READ.
//
// A repository is a directory: manifest.json lists the backups, each with
// its era range, block size, image size and chunk files
// (backups/<id>/<seq>.chunk) with their block ranges and SHA-256.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/era-go/era"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

const usage = `backup: full and incremental image backups driven by era

Usage:
  backup full    --repo DIR --meta FILE --image FILE [--external] [--block-sectors N]
  backup incr    --repo DIR --meta FILE --image FILE [--external] [--block-sectors N]
  backup full|incr --repo DIR --nbd URI --control PATH
  backup restore --repo DIR --out FILE [--to N] [--verify] [--force]
  backup verify  --repo DIR
  backup list    --repo DIR
  backup demo    [--size MiB] [--rounds N] [--writes N] [--seed N] [--dir DIR] [--keep] [--sync]

Run "backup COMMAND -h" for a command's flags.
`

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "full":
		err = cmdBackup(ctx, Full, rest, stdout, stderr)
	case "incr", "incremental":
		err = cmdBackup(ctx, Incremental, rest, stdout, stderr)
	case "restore":
		err = cmdRestore(ctx, rest, stdout, stderr)
	case "verify":
		err = cmdVerify(ctx, rest, stdout, stderr)
	case "list":
		err = cmdList(rest, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "backup: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "backup %s: %v\n", cmd, err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "backup %s: %v\n", cmd, err)
	return exitFail
}

// errUsage marks a command line error.
var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%s (-h for help): %w", fmt.Sprintf(format, args...), errUsage)
}

// newFlags returns a flag set for a command that reports errors instead of
// exiting.
func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("backup "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// parse parses args, turning flag errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// cmdBackup runs "backup full" and "backup incr".
func cmdBackup(ctx context.Context, kind Kind, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(map[Kind]string{Full: "full", Incremental: "incr"}[kind], stderr)
	repoDir := fs.String("repo", "", "repository `directory` (created by a full backup)")
	metaPath := fs.String("meta", "", "era metadata `file` or device")
	imagePath := fs.String("image", "", "image (origin) `file` or device")
	external := fs.Bool("external", false, "another process owns the device and holds a metadata snapshot: only read")
	sectors := fs.Uint("block-sectors", 0, "tracked block size in 512-byte `sectors` for new metadata (default: the metadata's, the repository's, or 128)")
	chunkMiB := fs.Int("chunk-mib", DefaultChunkBytes>>20, "most `MiB` per chunk file")
	nbdURI := fs.String("nbd", "", "back up a running era serve export at this NBD `URI` (with --control) instead of --meta and --image")
	control := fs.String("control", "", "era serve's control socket `path` (with --nbd)")
	fullIfStale := false
	if kind == Incremental {
		fs.BoolVar(&fullIfStale, "full-if-stale", false, "take a full backup when the metadata no longer knows the last backup's change ID (reformatted, restored or another device) instead of failing")
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if *nbdURI != "" || *control != "" {
		if *nbdURI == "" || *control == "" || *metaPath != "" || *imagePath != "" || *external || *sectors != 0 {
			return usageErr("--nbd and --control go together, without --meta, --image, --external and --block-sectors")
		}
		*imagePath = *nbdURI
	} else if *repoDir == "" || *metaPath == "" || *imagePath == "" {
		return usageErr("--repo, --meta and --image are required")
	}
	if *repoDir == "" {
		return usageErr("--repo is required")
	}
	if *external && *sectors != 0 {
		return usageErr("--block-sectors applies only without --external")
	}
	var repo *Repo
	var err error
	if kind == Full {
		repo, err = InitRepo(*repoDir)
	} else {
		repo, err = OpenRepo(*repoDir)
	}
	if err != nil {
		return err
	}
	src := Source{NBD: &NBDSource{URI: *nbdURI, Control: *control}}
	done := func() error { return nil }
	if *nbdURI == "" {
		src, done, err = openSource(repo, *metaPath, *imagePath, *external, uint32(*sectors), stderr)
		if err != nil {
			return err
		}
	}
	res, err := repo.Backup(ctx, kind, src, Options{ChunkBytes: *chunkMiB << 20, Progress: NewProgress(os.Stdout), FullIfStale: fullIfStale})
	if derr := done(); err == nil && derr != nil {
		err = derr
	}
	if res != nil {
		for _, p := range res.Cleaned {
			fmt.Fprintf(stdout, "removed %s, left by an interrupted backup\n", p)
		}
	}
	if err != nil {
		return err
	}
	b := res.Backup
	fmt.Fprintf(stdout, "backup %d (%s, eras %s) of %s into %s\n", b.ID, b.Kind, b.EraRange(), *imagePath, repo.Dir)
	fmt.Fprintf(stdout, "%s\n\n", consistency(b))
	return backupTable([]Backup{b}).write(stdout)
}

// openSource opens the metadata and image for a backup. In-process it
// opens the era device; done closes everything.
func openSource(repo *Repo, metaPath, imagePath string, external bool, sectors uint32, stderr io.Writer) (src Source, done func() error, err error) {
	if external {
		meta, err := os.Open(metaPath)
		if err != nil {
			return src, nil, err
		}
		image, err := os.Open(imagePath)
		if err != nil {
			meta.Close()
			return src, nil, err
		}
		size, err := era.StoreSize(image)
		if err != nil {
			meta.Close()
			image.Close()
			return src, nil, err
		}
		return Source{Meta: meta, Origin: image, Size: size}, func() error {
			return errors.Join(meta.Close(), image.Close())
		}, nil
	}
	image, err := os.OpenFile(imagePath, os.O_RDWR, 0)
	if err != nil {
		return src, nil, err
	}
	size, err := era.StoreSize(image)
	if err != nil {
		image.Close()
		return src, nil, err
	}
	meta, created, err := openMeta(metaPath, size)
	if err != nil {
		image.Close()
		return src, nil, err
	}
	if created {
		fmt.Fprintf(stderr, "created metadata file %s; era tracks writes made through an era.Device on it from now on\n", metaPath)
	}
	if sectors == 0 {
		sectors, err = guessBlockSectors(repo, meta)
		if err != nil {
			meta.Close()
			image.Close()
			return src, nil, err
		}
	}
	// Format only the file just created: an existing all-zero file is
	// more likely a wrong path than new metadata.
	d, err := era.Open(meta, image, era.Config{Format: created, BlockSectors: sectors, OriginSize: size})
	if errors.Is(err, era.ErrLocked) {
		err = fmt.Errorf("%w; another process owns the device: run this backup with --external while that process holds a metadata snapshot", err)
	}
	if err != nil {
		meta.Close()
		image.Close()
		return src, nil, fmt.Errorf("open era device on %s and %s: %w", metaPath, imagePath, err)
	}
	if d.Status().Held {
		// This process owns the device: a held snapshot was left by a
		// backup that was killed before it could drop it.
		fmt.Fprintf(stderr, "dropping a metadata snapshot left by an interrupted backup\n")
		if err := d.DropSnapshot(); err != nil {
			d.Close()
			meta.Close()
			image.Close()
			return src, nil, fmt.Errorf("drop stale metadata snapshot: %w", err)
		}
	}
	return Source{Device: d, Meta: meta}, func() error {
		return errors.Join(d.Close(), meta.Sync(), meta.Close(), image.Close())
	}, nil
}

// openMeta opens the metadata file read-write, creating a sparse one sized
// for an image of imageSize bytes if it does not exist.
func openMeta(name string, imageSize int64) (f *os.File, created bool, err error) {
	f, err = os.OpenFile(name, os.O_RDWR, 0)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return f, false, err
	}
	f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, false, err
	}
	if err := f.Truncate(metaSizeFor(imageSize)); err != nil {
		f.Close()
		os.Remove(name)
		return nil, false, err
	}
	return f, true, nil
}

// metaSizeFor returns a generous metadata size for an image: 4 MiB plus 16
// bytes per 4 KiB of image (room for the era array and several writesets
// at the smallest block size, with copies on write), in whole 4 KiB blocks.
func metaSizeFor(imageSize int64) int64 {
	n := 4<<20 + imageSize/4096*16
	return (n + 4095) &^ 4095
}

// guessBlockSectors returns the block size for era.Open: the formatted
// metadata's, else the repository's, else 128 sectors (64 KiB).
func guessBlockSectors(repo *Repo, meta *os.File) (uint32, error) {
	head := make([]byte, 4096)
	if _, err := meta.ReadAt(head, 0); err != nil && err != io.EOF {
		return 0, err
	}
	if !isZero(head) {
		v, err := era.OpenView(meta)
		if err != nil {
			return 0, fmt.Errorf("metadata %s: %w", meta.Name(), err)
		}
		return v.BlockSectors(), nil
	}
	m, err := repo.Manifest()
	if err != nil {
		return 0, err
	}
	if n := len(m.Backups); n > 0 {
		return uint32(m.Backups[n-1].BlockBytes / 512), nil
	}
	return 128, nil
}

// cmdRestore runs "backup restore".
func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("restore", stderr)
	repoDir := fs.String("repo", "", "repository `directory`")
	to := fs.Int("to", 0, "backup `ID` to restore (default: the latest)")
	out := fs.String("out", "", "image `file` to create")
	verify := fs.Bool("verify", false, "read the restored image back, check every block against the backups, print its SHA-256")
	force := fs.Bool("force", false, "replace --out if it exists")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *repoDir == "" || *out == "" {
		return usageErr("--repo and --out are required")
	}
	repo, err := OpenRepo(*repoDir)
	if err != nil {
		return err
	}
	res, err := repo.Restore(ctx, RestoreOptions{To: *to, Out: *out, Force: *force, Verify: *verify, Progress: NewProgress(os.Stdout)})
	if err != nil {
		return err
	}
	b := res.Backup
	chain := make([]string, len(res.Chain))
	for i, id := range res.Chain {
		chain[i] = fmt.Sprint(id)
	}
	fmt.Fprintf(stdout, "restored backup %d (%s, eras %s; applied %s) to %s: %s image, %s written in %s\n",
		b.ID, b.Kind, b.EraRange(), strings.Join(chain, ", "), res.Out, fmtBytes(b.ImageSize), fmtBytes(res.Written), fmtSeconds(res.Seconds))
	if *verify {
		fmt.Fprintf(stdout, "verified: every block matches the backups; SHA-256 %s\n", res.SHA256)
	}
	return nil
}

// repoCommand parses the arguments of a command that takes only --repo and
// opens the repository.
func repoCommand(name string, args []string, stderr io.Writer) (*Repo, error) {
	fs := newFlags(name, stderr)
	repoDir := fs.String("repo", "", "repository `directory`")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if *repoDir == "" {
		return nil, usageErr("--repo is required")
	}
	return OpenRepo(*repoDir)
}

// cmdVerify runs "backup verify".
func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	repo, err := repoCommand("verify", args, stderr)
	if err != nil {
		return err
	}
	res, err := repo.Verify(ctx, NewProgress(os.Stdout))
	if res == nil {
		return err
	}
	for _, p := range res.Leftovers {
		fmt.Fprintf(stdout, "note: %s was left by an interrupted backup; the next backup removes it\n", p)
	}
	if err != nil {
		for _, p := range res.Problems {
			fmt.Fprintf(stdout, "BAD  %v\n", p)
		}
		return fmt.Errorf("%d of %d chunks failed", len(res.Problems), res.Chunks)
	}
	fmt.Fprintf(stdout, "OK: %d backups, %d chunks, %s checked\n", res.Backups, res.Chunks, fmtBytes(res.Bytes))
	return nil
}

// cmdList runs "backup list".
func cmdList(args []string, stdout, stderr io.Writer) error {
	repo, err := repoCommand("list", args, stderr)
	if err != nil {
		return err
	}
	m, err := repo.Manifest()
	if err != nil {
		return err
	}
	if len(m.Backups) == 0 {
		fmt.Fprintf(stdout, "%s holds no backup\n", repo.Dir)
		return nil
	}
	last := m.Backups[len(m.Backups)-1]
	fmt.Fprintf(stdout, "%s: %d backups of a %s image in %s blocks; the next incremental copies eras %d and later\n\n",
		repo.Dir, len(m.Backups), fmtBytes(last.ImageSize), fmtBytes(int64(last.BlockBytes)), last.Era)
	return backupTable(m.Backups).write(stdout)
}

// consistency says whether backup b is the image of one moment.
func consistency(b Backup) string {
	if b.Consistent {
		return fmt.Sprintf("consistent: read from a point-in-time snapshot, the backup is the image exactly as it was when era %d began", b.Era)
	}
	return "not consistent: read from the live image; a block written during the copy may hold newer data (the next incremental copies it again)"
}
