// Command kvmrun boots the test guest of internal/kvm by hand: it runs a
// scenario script on the given disks and streams the console.
//
//	go run ./internal/kvm/kvmrun [-ext4] [-timeout 3m] [-env NAME=VALUE]... SCENARIO DISK...
//
// A DISK is a raw image file, or an NBD URI (nbd://..., nbd+unix://...);
// the guest sees them as /dev/vda, /dev/vdb, ... in order. -ext4 adds
// mkfs.ext4, fsck.ext4 and the ext4 module to the guest. The exit status
// is the scenario's, or 125 when the guest gave no result.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/era-go/era/internal/kvm"
)

type envFlag map[string]string

func (e envFlag) String() string { return fmt.Sprint(map[string]string(e)) }

func (e envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q is not NAME=VALUE", s)
	}
	e[k] = v
	return nil
}

func main() {
	env := envFlag{}
	flag.Var(env, "env", "NAME=VALUE exported to the scenario (repeatable)")
	ext4 := flag.Bool("ext4", false, "put mkfs.ext4, fsck.ext4 and the ext4 module in the guest")
	timeout := flag.Duration("timeout", 3*time.Minute, "kill qemu after this long")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: kvmrun [-ext4] [-timeout D] [-env NAME=VALUE]... SCENARIO DISK...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	script, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvmrun:", err)
		os.Exit(2)
	}
	var disks []kvm.Disk
	for _, d := range flag.Args()[1:] {
		if strings.HasPrefix(d, "nbd:") || strings.HasPrefix(d, "nbd+unix:") {
			disks = append(disks, kvm.Disk{NBD: d})
		} else {
			disks = append(disks, kvm.Disk{Path: d})
		}
	}
	cfg := kvm.Config{Log: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}
	if *ext4 {
		cfg.Extras, cfg.Modules = []kvm.Extra{kvm.E2fsprogs}, kvm.ExtModules
	}
	ctx := context.Background()
	m, err := kvm.Setup(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvmrun:", err)
		os.Exit(125)
	}
	res, err := m.Boot(ctx, kvm.Options{Scenario: string(script), Disks: disks, Env: env, Timeout: *timeout, Console: os.Stdout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvmrun:", err)
		os.Exit(125)
	}
	fmt.Fprintf(os.Stderr, "kvmrun: kernel %s, %s, %v, scenario status %d\n", m.Kernel, res.Accel, res.Elapsed.Round(time.Millisecond), res.Status)
	os.Exit(res.Status)
}
