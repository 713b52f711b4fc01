package retry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

var errDenied = errors.New("permission denied")

func classify(err error) Class {
	if errors.Is(err, errDenied) {
		return ClassPermission
	}
	return NetworkClass(err)
}

func fastPolicy() Policy {
	return Policy{Attempts: 3, Base: time.Millisecond, Factor: 2, Jitter: 0.1, Cap: 10 * time.Millisecond}
}

func TestDoRetriesATransientErrorUntilItSucceeds(t *testing.T) {
	var logged []string
	log := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
	calls := 0
	err := Do(context.Background(), log, fastPolicy(), classify, "ping", func(context.Context) error {
		calls++
		if calls < 3 {
			return fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if calls != 3 {
		t.Errorf("calls = %d, want 3", calls)
	}
	if len(logged) != 2 {
		t.Fatalf("logged %d retries, want 2: %q", len(logged), logged)
	}
	for _, want := range []string{`"attempt"=1`, `"errorClass"="network"`, `"wait"=`} {
		if !contains(logged[0], want) {
			t.Errorf("retry log %q lacks %s", logged[0], want)
		}
	}
}

func TestDoNeverRetriesAPermissionError(t *testing.T) {
	calls := 0
	err := Do(context.Background(), logr.Discard(), fastPolicy(), classify, "create", func(context.Context) error {
		calls++
		return errDenied
	})
	if !errors.Is(err, errDenied) {
		t.Fatalf("err = %v, want the permission error", err)
	}
	if calls != 1 {
		t.Errorf("calls = %d, want 1", calls)
	}
}

func TestDoGivesUpAfterTheLastAttemptWithTheLastError(t *testing.T) {
	calls := 0
	err := Do(context.Background(), logr.Discard(), fastPolicy(), classify, "ping", func(context.Context) error {
		calls++
		return &net.OpError{Op: "dial", Err: fmt.Errorf("attempt %d", calls)}
	})
	if calls != 3 {
		t.Errorf("calls = %d, want 3", calls)
	}
	if err == nil || !contains(err.Error(), "attempt 3") {
		t.Errorf("err = %v, want the third attempt's error", err)
	}
}

func TestDoStopsWaitingWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := Policy{Attempts: 5, Base: time.Hour, Factor: 2}
	calls := 0
	done := make(chan error, 1)
	go func() {
		done <- Do(ctx, logr.Discard(), p, classify, "ping", func(context.Context) error {
			calls++
			return syscall.ECONNRESET
		})
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("err = %v", err)
		}
		if calls != 1 {
			t.Errorf("calls = %d, want 1", calls)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Do kept waiting after the context was canceled")
	}
}

func TestIntoKeepsTheResultOfTheAttemptThatSucceeded(t *testing.T) {
	calls := 0
	var got int
	err := Do(context.Background(), logr.Discard(), fastPolicy(), classify, "count", Into(&got, func(context.Context) (int, error) {
		calls++
		if calls < 2 {
			return -1, fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
		}
		return calls * 10, nil
	}))
	if err != nil || got != 20 {
		t.Errorf("Do with Into = %d, %v; want 20, nil", got, err)
	}
}

func TestWithinBoundsEachAttempt(t *testing.T) {
	var deadlines []time.Duration
	err := Do(context.Background(), logr.Discard(), fastPolicy(), classify, "slow", Within(time.Minute, func(ctx context.Context) error {
		deadline, ok := ctx.Deadline()
		if !ok {
			t.Fatal("an attempt ran without a deadline")
		}
		deadlines = append(deadlines, time.Until(deadline))
		return fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	}))
	if err == nil || len(deadlines) != 3 {
		t.Fatalf("Do = %v after %d attempts; want the last error after 3", err, len(deadlines))
	}
	for i, d := range deadlines {
		if d <= 0 || d > time.Minute {
			t.Errorf("attempt %d had %s left, want at most a minute", i+1, d)
		}
	}
}

func TestNetworkClassRecognisesConnectionFailures(t *testing.T) {
	cases := map[string]struct {
		err  error
		want Class
	}{
		"nil":                {nil, ClassNone},
		"refused":            {fmt.Errorf("x: %w", syscall.ECONNREFUSED), ClassNetwork},
		"reset":              {syscall.ECONNRESET, ClassNetwork},
		"deadline":           {context.DeadlineExceeded, ClassNetwork},
		"canceled":           {context.Canceled, ClassCanceled},
		"dial error":         {&net.OpError{Op: "dial", Err: errors.New("no route")}, ClassNetwork},
		"anything else":      {errors.New("syntax error"), ClassOther},
		"permission wrapped": {fmt.Errorf("x: %w", errDenied), ClassOther},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := NetworkClass(tc.err); got != tc.want {
				t.Errorf("NetworkClass(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
