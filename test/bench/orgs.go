package main

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/testutil"
)

// labelRun marks the Organizations of one bench side, so that the watch
// sees only them.
const labelRun = "bench.orgforge.io/run"

// newOrganization is what a user would apply: defaults spelled out, and
// deletionPolicy Delete so that deletion does the whole clean-up; opts
// change it further (the fleet's cluster selector).
func newOrganization(name, run string, opts ...testutil.OrgOption) *tenancyv1alpha1.Organization {
	base := []testutil.OrgOption{testutil.WithLabel(labelRun, run), testutil.WithDisplayName("Bench " + name)}
	return testutil.NewOrg(name, append(base, opts...)...)
}

// orgNames names the scenario's N organizations of one side: names
// differ between sides and between scenarios.
func orgNames(side string, sc scenario) []string {
	names := make([]string, sc.N)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%s-%04d", side, sc.Name, i)
	}
	return names
}

// tracker watches one run's Organizations and notes, for each, when it was
// first seen Ready and when it was seen gone. Times are when the bench
// received the event.
type tracker struct {
	mu    sync.Mutex
	ready map[string]time.Time
	gone  map[string]time.Time
	seen  map[string]bool
	// notApplied are the names whose create failed: no watch event will
	// come for them.
	notApplied map[string]error
	// rewatches counts watches re-established after they ended.
	rewatches int
	done      chan struct{}
}

func startTracker(ctx context.Context, c client.WithWatch, run string) *tracker {
	t := &tracker{ready: map[string]time.Time{}, gone: map[string]time.Time{}, seen: map[string]bool{},
		notApplied: map[string]error{}, done: make(chan struct{})}
	go t.loop(ctx, c, client.MatchingLabels{labelRun: run})
	return t
}

func (t *tracker) loop(ctx context.Context, c client.WithWatch, sel client.MatchingLabels) {
	defer close(t.done)
	for ctx.Err() == nil {
		// A list, then a watch from its resourceVersion; when the watch
		// ends, list again so that nothing in between is missed.
		list := &tenancyv1alpha1.OrganizationList{}
		if err := c.List(ctx, list, sel); err != nil {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		now := time.Now()
		present := map[string]bool{}
		t.mu.Lock()
		for i := range list.Items {
			present[list.Items[i].Name] = true
			t.observe(&list.Items[i], now)
		}
		for name := range t.seen {
			if !present[name] {
				t.markGone(name, now)
			}
		}
		t.mu.Unlock()
		w, err := c.Watch(ctx, &tenancyv1alpha1.OrganizationList{}, sel,
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion, AllowWatchBookmarks: true}})
		if err != nil {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		t.consume(w)
		w.Stop()
		t.mu.Lock()
		t.rewatches++
		t.mu.Unlock()
	}
}

func (t *tracker) consume(w watch.Interface) {
	for ev := range w.ResultChan() {
		now := time.Now()
		switch ev.Type {
		case watch.Added, watch.Modified:
			if org, ok := ev.Object.(*tenancyv1alpha1.Organization); ok {
				t.mu.Lock()
				t.observe(org, now)
				t.mu.Unlock()
			}
		case watch.Deleted:
			if org, ok := ev.Object.(*tenancyv1alpha1.Organization); ok {
				t.mu.Lock()
				t.seen[org.Name] = true
				t.markGone(org.Name, now)
				t.mu.Unlock()
			}
		case watch.Error:
			return
		}
	}
}

// observe notes a present Organization; the caller holds mu.
func (t *tracker) observe(org *tenancyv1alpha1.Organization, now time.Time) {
	t.seen[org.Name] = true
	if _, ok := t.ready[org.Name]; !ok && meta.IsStatusConditionTrue(org.Status.Conditions, tenancyv1alpha1.ConditionReady) {
		t.ready[org.Name] = now
	}
}

func (t *tracker) markGone(name string, now time.Time) {
	if _, ok := t.gone[name]; !ok {
		t.gone[name] = now
	}
}

// waitAll waits until every name is in the map pick returns, and returns
// the names still missing when timeout passes or ctx ends.
func (t *tracker) waitAll(ctx context.Context, names []string, pick func(*tracker) map[string]time.Time, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		t.mu.Lock()
		var missing []string
		m := pick(t)
		for _, n := range names {
			if _, ok := m[n]; !ok {
				missing = append(missing, n)
			}
		}
		t.mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return missing
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSeen waits until the watch has seen the Organization, as a
// controller learns of one from its watch, or its create has failed.
func (t *tracker) waitSeen(ctx context.Context, name string) error {
	for {
		t.mu.Lock()
		seen, applyErr := t.seen[name], t.notApplied[name]
		t.mu.Unlock()
		switch {
		case seen:
			return nil
		case applyErr != nil:
			return applyErr
		case ctx.Err() != nil:
			return ctx.Err()
		}
		sleepCtx(ctx, 5*time.Millisecond)
	}
}

func readyMap(t *tracker) map[string]time.Time { return t.ready }
func goneMap(t *tracker) map[string]time.Time  { return t.gone }

// times returns a copy of the map pick returns.
func (t *tracker) times(pick func(*tracker) map[string]time.Time) map[string]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]time.Time, len(pick(t)))
	for k, v := range pick(t) {
		out[k] = v
	}
	return out
}

// applyAll creates the Organizations, newOrganization's with opts, with
// workers client goroutines, as fast as the apiserver takes them, and
// returns when each create was sent.
// A failed create is also noted in t, so that no one waits for its watch
// event.
func applyAll(ctx context.Context, c client.Client, names []string, run string, workers int, t *tracker, opts ...testutil.OrgOption) (map[string]time.Time, []error) {
	return forEach(ctx, names, workers, func(ctx context.Context, name string) error {
		if err := c.Create(ctx, newOrganization(name, run, opts...)); err != nil {
			err = fmt.Errorf("creating Organization %s: %w", name, err)
			t.mu.Lock()
			t.notApplied[name] = err
			t.mu.Unlock()
			return err
		}
		return nil
	})
}

// deleteAll deletes the Organizations the same way.
func deleteAll(ctx context.Context, c client.Client, names []string, workers int) (map[string]time.Time, []error) {
	return forEach(ctx, names, workers, func(ctx context.Context, name string) error {
		org := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := c.Delete(ctx, org); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Organization %s: %w", name, err)
		}
		return nil
	})
}

// forEach calls fn for every name with workers goroutines and records, for
// each success, when its call was sent.
func forEach(ctx context.Context, names []string, workers int, fn func(context.Context, string) error) (map[string]time.Time, []error) {
	sent := make(map[string]time.Time, len(names))
	var errs []error
	var mu sync.Mutex
	next := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for name := range next {
				at := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := fn(cctx, name)
				cancel()
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					sent[name] = at
				}
				mu.Unlock()
			}
		})
	}
	feed(ctx, next, slices.Values(names))
	wg.Wait()
	return sent, errs
}

// feed sends items to the workers on next, in order, until ctx ends, and
// then closes next.
func feed[T any](ctx context.Context, next chan<- T, items iter.Seq[T]) {
	defer close(next)
	for it := range items {
		select {
		case next <- it:
		case <-ctx.Done():
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
