package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/credentials"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/retry"
	"github.com/orgforge/orgforge/internal/storage"
)

// rawServices are the project's own services, built as the registry builds
// them for the operator (same connection cap, retry policy, IAM path), but
// with an application_name of their own.
type rawServices struct {
	db    *aurora.Service
	st    *storage.Service
	creds *credentials.Service
	steps *stepTimer
	// access is the Organizations' spec.storage.access: with None the
	// loop makes no IAM user and no key, as the operator makes none.
	access tenancyv1alpha1.StorageAccess
}

func newRawServices(ctx context.Context, st *devstack.Stack, maxConns int, access tenancyv1alpha1.StorageAccess) (*rawServices, error) {
	db, err := aurora.New(ctx, aurora.Config{
		AdminDSN:        st.Postgres.AdminDSN(),
		MaxConnections:  int32(maxConns),
		ApplicationName: appRaw,
		Retry:           retry.DefaultPolicy,
	}, logr.Discard())
	if err != nil {
		return nil, err
	}
	s3, err := storage.New(ctx, storage.Config{
		Bucket:          st.S3.Bucket,
		Region:          st.S3.Region,
		Endpoint:        st.S3.Endpoint,
		IAMEndpoint:     st.S3.IAMEndpoint,
		UsePathStyle:    true,
		AccessKeyID:     st.S3.AccessKey,
		SecretAccessKey: st.S3.SecretKey,
		IAMPath:         storage.DefaultIAMPath,
		Retry:           retry.DefaultPolicy,
	}, logr.Discard())
	if err != nil {
		db.Close()
		return nil, err
	}
	return &rawServices{db: db, st: s3, creds: credentials.NewService(), steps: newStepTimer(), access: access}, nil
}

func (r *rawServices) close() {
	r.st.Close()
	r.db.Close()
}

// rawOrg is one organization of the raw loop, named and marked as the
// operator would name and mark it.
type rawOrg struct {
	name, uid, role, database, prefix string
}

func newRawOrg(name string) (rawOrg, error) {
	prefix, err := naming.Prefix(naming.DefaultPrefixTemplate, name)
	if err != nil {
		return rawOrg{}, err
	}
	uid, err := newUID()
	if err != nil {
		return rawOrg{}, err
	}
	return rawOrg{name: name, uid: uid, role: naming.RoleName(name), database: naming.DatabaseName(name), prefix: prefix}, nil
}

// newUID makes a random UUID-shaped id, as metadata.uid looks.
func newUID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// provision does an organization's external work, in the reconciler's
// order: role with a SCRAM verifier, database with its marker, database
// secured, prefix marker, IAM user with its prefix policy, access key.
func (r *rawServices) provision(ctx context.Context, o rawOrg) error {
	if _, err := r.provisionDatabase(ctx, o); err != nil {
		return err
	}
	_, err := r.provisionStorage(ctx, o)
	return err
}

// provisionDatabase makes the role, with a new password it returns, and
// the database, marked and secured.
func (r *rawServices) provisionDatabase(ctx context.Context, o rawOrg) (password string, err error) {
	dbMarker := aurora.Marker{Org: o.name, UID: o.uid}
	if err := r.steps.time("role", func() error {
		if password, err = r.creds.NewPassword(); err != nil {
			return err
		}
		verifier, err := r.creds.Verifier(password)
		if err != nil {
			return err
		}
		_, err = r.db.EnsureRole(ctx, aurora.RoleSpec{Name: o.role, Marker: dbMarker, Verifier: verifier, ConnLimit: 10})
		return err
	}); err != nil {
		return "", fmt.Errorf("role: %w", err)
	}
	if err := r.steps.time("database", func() error {
		_, err := r.db.EnsureDatabase(ctx, o.database, o.role, dbMarker)
		return err
	}); err != nil {
		return "", fmt.Errorf("database: %w", err)
	}
	if err := r.steps.time("secure", func() error {
		_, err := r.db.SecureDatabase(ctx, o.database, o.role)
		return err
	}); err != nil {
		return "", fmt.Errorf("secure: %w", err)
	}
	return password, nil
}

// provisionStorage makes the prefix marker and, with AccessKey, the IAM
// user with its prefix policy, and the access key it returns.
func (r *rawServices) provisionStorage(ctx context.Context, o rawOrg) (key storage.AccessKey, err error) {
	stMarker := storage.Marker{Org: o.name, UID: o.uid}
	if err := r.steps.time("prefix", func() error {
		_, err := r.st.EnsurePrefix(ctx, o.prefix, stMarker)
		return err
	}); err != nil {
		return key, fmt.Errorf("prefix: %w", err)
	}
	if r.access == tenancyv1alpha1.StorageAccessNone {
		return key, nil
	}
	var user string
	if err := r.steps.time("iamUser", func() error {
		var err error
		user, _, err = r.st.EnsurePrefixUser(ctx, o.name, stMarker, o.prefix)
		return err
	}); err != nil {
		return key, fmt.Errorf("IAM user: %w", err)
	}
	if err := r.steps.time("accessKey", func() error {
		key, err = r.st.CreateAccessKey(ctx, user)
		return err
	}); err != nil {
		return key, fmt.Errorf("access key: %w", err)
	}
	return key, nil
}

// deprovision removes it all again, in the reconciler's order.
func (r *rawServices) deprovision(ctx context.Context, o rawOrg) error {
	if err := r.steps.time("deleteIAMUser", func() error {
		_, err := r.st.DeletePrefixUser(ctx, storage.UserName(o.name))
		return err
	}); err != nil {
		return fmt.Errorf("IAM user: %w", err)
	}
	if err := r.steps.time("deletePrefix", func() error {
		_, err := r.st.DeletePrefix(ctx, o.prefix)
		return err
	}); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	marker := aurora.Marker{Org: o.name, UID: o.uid}
	if err := r.steps.time("dropDatabase", func() error {
		_, err := r.db.DropDatabase(ctx, o.database, marker)
		return err
	}); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if err := r.steps.time("dropRole", func() error {
		_, err := r.db.DropRole(ctx, o.role, marker)
		return err
	}); err != nil {
		return fmt.Errorf("role: %w", err)
	}
	return nil
}

// stepTimer sums the time each step of the raw loop takes, as the
// operator's orgforge_reconcile_step_duration_seconds does for its steps.
type stepTimer struct {
	mu    sync.Mutex
	steps map[string]HistogramSummary
}

func newStepTimer() *stepTimer { return &stepTimer{steps: map[string]HistogramSummary{}} }

func (t *stepTimer) time(step string, fn func() error) error {
	start := time.Now()
	err := fn()
	d := time.Since(start)
	t.mu.Lock()
	h := t.steps[step]
	h.Count++
	h.TotalSeconds += d.Seconds()
	t.steps[step] = h
	t.mu.Unlock()
	return err
}

// take returns the steps timed since the last take, and starts afresh.
func (t *stepTimer) take() map[string]HistogramSummary {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.steps
	t.steps = map[string]HistogramSummary{}
	for k, h := range out {
		h.MeanMs = round(h.TotalSeconds/float64(h.Count)*1000, 2)
		h.TotalSeconds = round(h.TotalSeconds, 3)
		out[k] = h
	}
	return out
}

// loopResult is what a worker loop measured: when it started, and when
// each item ended (zero for the ones that failed).
type loopResult struct {
	start time.Time
	ends  []time.Time
	errs  []error
}

// workerLoop runs fn on items 0..n-1 with c workers taking them in order,
// as a controller's workers take a queue filled at once. It stops taking
// new items when ctx ends.
func workerLoop(ctx context.Context, n, c int, fn func(ctx context.Context, i int) error) loopResult {
	res := loopResult{start: time.Now(), ends: make([]time.Time, n)}
	next := make(chan int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for i := range next {
				err := fn(ctx, i)
				if err != nil {
					mu.Lock()
					if len(res.errs) < 20 {
						res.errs = append(res.errs, err)
					} else if len(res.errs) == 20 {
						res.errs = append(res.errs, errors.New("(more errors left out)"))
					}
					mu.Unlock()
					continue
				}
				res.ends[i] = time.Now()
			}
		})
	}
	feed(ctx, next, func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	})
	wg.Wait()
	return res
}
