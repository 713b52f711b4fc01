package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Process is a command, such as the operator's binary, running with its
// output in a log file. It is killed with the process that started it,
// whatever ends that one.
type Process struct {
	Cmd     *exec.Cmd
	LogPath string

	done   chan struct{}
	exited atomic.Bool
	err    error

	mu        sync.Mutex
	signalled bool
}

// StartProcess starts cmd with its standard output and error in a new file
// at logPath.
func StartProcess(cmd *exec.Cmd, logPath string) (*Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	p := &Process{Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		p.exited.Store(true)
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool { return p.exited.Load() }

// Err is what waiting for the process returned; it is set once Done is
// closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Signalled reports whether Stop or Kill was called, so that an exit can
// be told from a crash.
func (p *Process) Signalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signalled
}

func (p *Process) signal(s syscall.Signal) {
	p.mu.Lock()
	p.signalled = true
	p.mu.Unlock()
	_ = p.Cmd.Process.Signal(s)
}

// Kill SIGKILLs the process, as a node failure or an OOM kill would, and
// waits for it to exit.
func (p *Process) Kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to end with SIGTERM, as a Deployment's rollout
// would, and kills it if it has not exited within grace.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Log is the process's log so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Tail is the last n lines of the process's log, for failure messages.
func (p *Process) Tail(n int) string { return TailFile(p.LogPath, n) }

// TailFile is the last n lines of the file at path, or the error reading
// it.
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
