// runc-capshim: a workaround for machines whose capability bounding set lacks capabilities that
// runc is asked to grant (on the CI machine: CAP_SYS_RESOURCE), where `docker run --privileged`,
// and privileged pods inside a kind node, fail with "unable to apply caps: operation not
// permitted". Registered as an OCI runtime (dockerd --add-runtime/--default-runtime, containerd's
// runc BinaryName), it removes from the bundle's config.json (create/run) and from the process
// JSON of `exec --process FILE` every capability that is not in this process's bounding set
// (/proc/self/status CapBnd); without CAP_SYS_RESOURCE it also raises a config's
// process.oomScoreAdj that is below this process's own oom_score_adj to that value (lowering it
// needs CAP_SYS_RESOURCE, so runc would fail with "permission denied"); then it execs the real runc ($RUNC_CAPSHIM_RUNC, default
// /usr/sbin/runc) with the arguments unchanged. Nothing else is touched; on a machine with a full
// bounding set it changes nothing. A container never could have held the removed capabilities.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// capability numbers from linux/capability.h
var capNumbers = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
	"CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
	"CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
	"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
	"CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
	"CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
	"CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
	"CAP_CHECKPOINT_RESTORE": 40,
}

func boundingSet() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapBnd:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapBnd in /proc/self/status")
}

func ownOOMScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// filterCaps drops unavailable capabilities from an OCI "capabilities" object in place.
func filterCaps(caps map[string]any, bnd uint64) bool {
	changed := false
	for set, v := range caps {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		kept := make([]any, 0, len(list))
		for _, c := range list {
			name, _ := c.(string)
			if n, known := capNumbers[strings.ToUpper(name)]; known && bnd&(1<<n) == 0 {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	return changed
}

// rewrite filters the capabilities of a process object found at path (keys lead to it).
func rewrite(path string, bnd uint64, keys ...string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	obj := doc
	for _, k := range keys {
		next, ok := obj[k].(map[string]any)
		if !ok {
			return nil
		}
		obj = next
	}
	changed := false
	if caps, ok := obj["capabilities"].(map[string]any); ok {
		changed = filterCaps(caps, bnd)
	}
	if adj, ok := obj["oomScoreAdj"].(float64); ok && bnd&(1<<capNumbers["CAP_SYS_RESOURCE"]) == 0 {
		if own, err := ownOOMScoreAdj(); err == nil && adj < float64(own) {
			obj["oomScoreAdj"] = own
			changed = true
		}
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".capshim"
	if err := os.WriteFile(tmp, out, st.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// flagValue finds "--name V", "--name=V", "-s V" after the subcommand.
func flagValue(args []string, long, short string) (string, bool) {
	for i, a := range args {
		if a == long || (short != "" && a == short) {
			if i+1 < len(args) {
				return args[i+1], true
			}
		}
		if v, ok := strings.CutPrefix(a, long+"="); ok {
			return v, true
		}
	}
	return "", false
}

// global flags of runc that take no value; every other global flag (--root, --log, --log-format,
// --criu, --rootless) takes one
var globalBool = map[string]bool{"--debug": true, "--systemd-cgroup": true}

func subcommand(args []string) (int, string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return i, a
		}
		if !strings.Contains(a, "=") && !globalBool[a] && a != "--help" && a != "-h" && a != "--version" && a != "-v" {
			i++ // skip the flag's value
		}
	}
	return -1, ""
}

func main() {
	real := os.Getenv("RUNC_CAPSHIM_RUNC")
	if real == "" {
		real = "/usr/sbin/runc"
	}
	args := os.Args[1:]
	if bnd, err := boundingSet(); err == nil {
		i, cmd := subcommand(args)
		var err error
		switch cmd {
		case "create", "run":
			bundle, ok := flagValue(args[i+1:], "--bundle", "-b")
			if !ok {
				bundle, _ = os.Getwd()
			}
			err = rewrite(filepath.Join(bundle, "config.json"), bnd, "process")
		case "exec":
			if p, ok := flagValue(args[i+1:], "--process", "-p"); ok {
				err = rewrite(p, bnd)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "runc-capshim: %v\n", err)
		}
	}
	argv := append([]string{real}, args...)
	if err := syscall.Exec(real, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-capshim: exec %s: %v\n", real, err)
		os.Exit(127)
	}
}
