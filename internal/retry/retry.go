// Package retry is the shared retry helper of the registry's services, the
// seed's BaseService.with_retry: exponential backoff with jitter, bounded by
// the context, around transient errors only.
package retry

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Class names the kind of an error, for logs and metrics.
type Class string

const (
	// ClassNone is the class of a nil error.
	ClassNone Class = ""
	// ClassNetwork is a refused, reset or timed-out connection.
	ClassNetwork Class = "network"
	// ClassUnavailable is a server that says it is shutting down, overloaded
	// or failing (PostgreSQL 57P01/53300, HTTP 5xx).
	ClassUnavailable Class = "unavailable"
	// ClassThrottled is a server asking the client to slow down.
	ClassThrottled Class = "throttled"
	// ClassPermission is a refusal for lack of rights; never retried.
	ClassPermission Class = "permission"
	// ClassInvalid is a request the server will never accept; never retried.
	ClassInvalid Class = "invalid"
	// ClassConflict is a name already taken by something that is not ours.
	ClassConflict Class = "conflict"
	// ClassCanceled is a canceled or expired context.
	ClassCanceled Class = "canceled"
	// ClassOther is anything else; never retried.
	ClassOther Class = "other"
)

// Transient reports whether errors of the class are worth retrying.
func (c Class) Transient() bool {
	return c == ClassNetwork || c == ClassUnavailable || c == ClassThrottled
}

// Classifier tells the class of an error. Each service has its own, built on
// NetworkClass for what all of them share.
type Classifier func(error) Class

// Policy is how often and how patiently to retry.
type Policy struct {
	// Attempts is the total number of tries, the first included.
	Attempts int
	// Base is the wait before the second try; each later wait is Factor
	// times the one before, give or take Jitter.
	Base   time.Duration
	Factor float64
	Jitter float64
	// Cap bounds a single wait.
	Cap time.Duration
}

// DefaultPolicy is the seed's: three attempts, one second, doubling.
var DefaultPolicy = Policy{Attempts: 3, Base: time.Second, Factor: 2, Jitter: 0.2, Cap: 10 * time.Second}

// Do runs fn until it succeeds, fails with an error that is not transient,
// the attempts run out or ctx ends. It logs each retry with the attempt, the
// wait and the error's class, and returns fn's last error.
func Do(ctx context.Context, log logr.Logger, p Policy, classify Classifier, operation string, fn func(context.Context) error) error {
	if p.Attempts < 1 {
		p.Attempts = 1
	}
	backoff := wait.Backoff{Duration: p.Base, Factor: p.Factor, Jitter: p.Jitter, Steps: p.Attempts, Cap: p.Cap}
	var err error
	for attempt := 1; ; attempt++ {
		if err = fn(ctx); err == nil {
			return nil
		}
		class := classify(err)
		if !class.Transient() || attempt >= p.Attempts || ctx.Err() != nil {
			return err
		}
		delay := backoff.Step()
		log.Info("Retrying after a transient error", "operation", operation, "attempt", attempt,
			"wait", delay.String(), "errorClass", string(class), "error", err.Error())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// Within bounds each call of fn, each attempt Do makes, by timeout.
func Within(timeout time.Duration, fn func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return fn(ctx)
	}
}

// Into adapts fn, a call with a result, to the func Do runs: each attempt
// stores its result in *out, so that after Do succeeds *out holds that of
// the attempt that succeeded.
func Into[T any](out *T, fn func(context.Context) (T, error)) func(context.Context) error {
	return func(ctx context.Context) error {
		var err error
		*out, err = fn(ctx)
		return err
	}
}

// NetworkClass classifies the errors every client shares: canceled contexts,
// refused or reset connections and timeouts. It returns ClassOther for
// anything else, so a service's classifier can look further.
func NetworkClass(err error) Class {
	switch {
	case err == nil:
		return ClassNone
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, context.DeadlineExceeded):
		return ClassNetwork
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return ClassNetwork
	}
	var oerr *net.OpError
	if errors.As(err, &oerr) {
		return ClassNetwork
	}
	return ClassOther
}
