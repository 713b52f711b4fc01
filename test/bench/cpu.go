package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuSnapshot is the CPU seconds used so far by each process the bench
// started (with its descendants: PostgreSQL's backends count as
// "postgres"), and by the bench itself, which runs the raw loop.
type cpuSnapshot map[string]float64

// procEntry is one line of /proc/<pid>/stat, the parts the bench reads.
type procEntry struct {
	pid, ppid int
	comm      string
	// own is utime+stime; reaped is cutime+cstime, the children it waited
	// for (PostgreSQL's ended backends).
	own, reaped float64
}

func parseProcStat(stat string) (procEntry, error) {
	open := strings.IndexByte(stat, '(')
	end := strings.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return procEntry{}, fmt.Errorf("unexpected /proc stat %q", stat)
	}
	var e procEntry
	var err error
	if e.pid, err = strconv.Atoi(strings.TrimSpace(stat[:open])); err != nil {
		return e, err
	}
	e.comm = stat[open+1 : end]
	f := strings.Fields(stat[end+1:])
	if len(f) < 15 {
		return e, fmt.Errorf("unexpected /proc stat %q", stat)
	}
	if e.ppid, err = strconv.Atoi(f[1]); err != nil {
		return e, err
	}
	var ticks [4]float64
	for i := range ticks {
		if ticks[i], err = strconv.ParseFloat(f[11+i], 64); err != nil {
			return e, err
		}
	}
	e.own = (ticks[0] + ticks[1]) / clockTicks
	e.reaped = (ticks[2] + ticks[3]) / clockTicks
	return e, nil
}

// takeCPU reads /proc; operatorPid, when not zero, is named "orgforge".
func takeCPU(operatorPid int) cpuSnapshot {
	self := os.Getpid()
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	var all []procEntry
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if e, err := parseProcStat(string(b)); err == nil {
			all = append(all, e)
		}
	}
	snap := groupCPU(all, self, operatorPid)
	if busy, err := machineBusy(); err == nil {
		snap[machineKey] = busy
	}
	return snap
}

// machineKey holds, in a snapshot, the busy time of the whole machine.
const machineKey = "(machine)"

// machineBusy is the CPU time the whole machine has spent busy, from the
// first line of /proc/stat: user, nice, system, irq, softirq and steal.
func machineBusy() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat %q", line)
	}
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, err
		}
		busy += v
	}
	return busy / clockTicks, nil
}

// groupCPU sums the process tree under each child of self by the child's
// name; self counts its own time only, as "bench".
func groupCPU(all []procEntry, self, operatorPid int) cpuSnapshot {
	children := map[int][]procEntry{}
	out := cpuSnapshot{}
	for _, e := range all {
		children[e.ppid] = append(children[e.ppid], e)
		if e.pid == self {
			out["bench"] += e.own
		}
	}
	var subtree func(e procEntry) float64
	subtree = func(e procEntry) float64 {
		sum := e.own + e.reaped
		for _, c := range children[e.pid] {
			sum += subtree(c)
		}
		return sum
	}
	for _, c := range children[self] {
		name := c.comm
		if c.pid == operatorPid {
			name = "orgforge"
		}
		out[name] += subtree(c)
	}
	return out
}

// since is the CPU each component used after before; components that
// used none are left out. "other" is what the rest of the machine used
// meanwhile, processes the bench did not start: the noise of the run.
func (s cpuSnapshot) since(before cpuSnapshot) map[string]float64 {
	out := map[string]float64{}
	var ours float64
	for k, v := range s {
		if k == machineKey {
			continue
		}
		if d := round(v-before[k], 2); d > 0 {
			out[k] = d
			ours += d
		}
	}
	if m, ok := s[machineKey]; ok {
		if b, ok := before[machineKey]; ok {
			out["other"] = round(max(m-b-ours, 0), 2)
		}
	}
	return out
}
