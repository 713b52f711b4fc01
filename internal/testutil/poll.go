// Package testutil is orgforge's one shared test kit, for the end-to-end,
// reliability, shipping and benchmark suites and for make dev's driver:
// polling, Organization builders, readiness at the current generation, S3
// and SQL checks, and processes run with their log in a file. Production
// code never imports it.
package testutil

import (
	"context"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// DefaultInterval is how often Eventually checks its condition.
const DefaultInterval = 100 * time.Millisecond

// Condition reports whether what a test waits for holds and, when it does
// not, a detail of the state it saw for the failure message.
type Condition func() (ok bool, detail string)

// Poll checks cond every interval until it holds, the timeout passes or ctx
// ends. It returns how long that took, the last detail cond gave, and the
// poll's error when cond never held.
func Poll(ctx context.Context, interval, timeout time.Duration, cond Condition) (time.Duration, string, error) {
	start := time.Now()
	last := ""
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(context.Context) (bool, error) {
		ok, detail := cond()
		last = detail
		return ok, nil
	})
	return time.Since(start), last, err
}

// Eventually checks cond every DefaultInterval until it holds and returns
// how long that took; the test fails if it does not hold within timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond Condition) time.Duration {
	t.Helper()
	return EventuallyEvery(t, DefaultInterval, timeout, what, cond)
}

// EventuallyEvery is Eventually checking every interval.
func EventuallyEvery(t testing.TB, interval, timeout time.Duration, what string, cond Condition) time.Duration {
	t.Helper()
	took, last, err := Poll(context.Background(), interval, timeout, cond)
	if err != nil {
		t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
	}
	return took
}

// Parallel calls fn on every item, n at a time, and returns the errors it
// returned.
func Parallel[T any](items []T, n int, fn func(T) error) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, n)
	for _, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(it); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs
}
