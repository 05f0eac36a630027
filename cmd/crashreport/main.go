// Command crashreport runs the full crash, fault and bad-input torture of
// the era package and prints its figures as a markdown table, for the
// README's reliability section.
//
// Run it from the module root:
//
//	go run ./cmd/crashreport                 # about ten minutes
//	go run ./cmd/crashreport -fuzztime 5m    # longer fuzzing
//
// It runs `go test -crash.full` on the torture tests (which print their
// figures on lines starting with REPORT) and then each fuzz target for
// -fuzztime, and fails if any of them fails.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

var (
	fuzztime = flag.Duration("fuzztime", time.Minute, "how long to run each fuzz target (0: skip fuzzing)")
	race     = flag.Bool("race", false, "run the tests with the race detector")
	verbose  = flag.Bool("v", false, "show the output of go test")
)

var fuzzTargets = []string{"FuzzOpen", "FuzzOpenView", "FuzzOpenSnapshot", "FuzzCheck"}

// tortureTests are run in this order, one go test each, so the table
// reads in this order.
var tortureTests = []string{
	"^(TestCrashTorture|TestSuperblockTearsCleanly)$",
	"^(TestConcurrency)$",
	"^(TestFaultMetadataStore|TestFaultMetadataFull|TestFaultOriginWrite|TestFaultShortMetadataReads)$",
	"^(TestMutatedImages|TestOpenRejectsFreeSuperblock)$",
}

type row struct{ name, value string }

func main() {
	flag.Parse()
	start := time.Now()
	var rows []row
	failed := false

	for _, tests := range tortureTests {
		args := []string{"test", "-count=1", "-timeout=4h", "-run", tests, "-v"}
		if *race {
			args = append(args, "-race")
		}
		args = append(args, ".", "-args", "-crash.full")
		out, err := goCmd(args...)
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if f := strings.SplitN(sc.Text(), "\t", 3); len(f) == 3 && f[0] == "REPORT" {
				rows = append(rows, row{f[1], f[2]})
			}
		}
		if err != nil {
			failed = true
			fmt.Fprintf(os.Stderr, "crashreport: %s failed: %v\n", tests, err)
			printFailures(out)
		}
	}

	if *fuzztime > 0 {
		execs := regexp.MustCompile(`execs: (\d+)`)
		for _, target := range fuzzTargets {
			out, err := goCmd("test", "-count=1", "-run", "^$", "-fuzz", "^"+target+"$", "-fuzztime", fuzztime.String(), ".")
			n := "?"
			for _, m := range execs.FindAllSubmatch(out, -1) {
				n = string(m[1])
			}
			result := n + " executions"
			if err != nil {
				failed = true
				result += ", **FAILED**"
				fmt.Fprintf(os.Stderr, "crashreport: %s failed: %v\n", target, err)
				printFailures(out)
			}
			rows = append(rows, row{fmt.Sprintf("fuzzing %s for %v", target, *fuzztime), result})
		}
	}

	fmt.Printf("| figure | value |\n|---|---:|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s |\n", r.name, r.value)
	}
	status := "all passed"
	if failed {
		status = "**FAILURES** (see above)"
	}
	fmt.Printf("\n%s; %s, %s in %v.\n", status, goVersion(), platform(), time.Since(start).Round(time.Second))
	if failed {
		os.Exit(1)
	}
}

// goCmd runs the go command and returns its standard output.
func goCmd(args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if *verbose {
		cmd.Stdout = io.MultiWriter(&out, os.Stderr)
	}
	fmt.Fprintf(os.Stderr, "crashreport: go %s\n", strings.Join(args, " "))
	err := cmd.Run()
	return out.Bytes(), err
}

// printFailures shows the lines of a failed run that say why.
func printFailures(out []byte) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "FAIL") || strings.Contains(l, "_test.go:") || strings.Contains(l, "panic") {
			fmt.Fprintln(os.Stderr, l)
		}
	}
}

func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return "go"
	}
	return strings.TrimSpace(string(out))
}

func platform() string {
	out, _ := exec.Command("go", "env", "GOOS", "GOARCH").Output()
	f := strings.Fields(string(out))
	cpus := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cpus = fmt.Sprintf(", %d CPUs", bytes.Count(b, []byte("processor\t:")))
	}
	return strings.Join(f, "/") + cpus
}
