package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readMarker(t *testing.T, key string) Marker {
	t.Helper()
	data, err := getObject(t.Context(), key)
	if err != nil {
		t.Fatalf("reading marker %s: %v", key, err)
	}
	var m Marker
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("decoding marker %s: %v", key, err)
	}
	return m
}

func TestEnsurePrefixWritesTheMarkerOnceAndChangesNothingTheSecondTime(t *testing.T) {
	s, rec := newRecordedService(t)
	ctx := t.Context()
	prefix := "orgs/acme/"
	m := Marker{Org: "acme", UID: "uid-acme"}

	created, err := s.EnsurePrefix(ctx, prefix, m)
	if err != nil || !created {
		t.Fatalf("first EnsurePrefix = %v, %v; want created", created, err)
	}
	if diff := cmp.Diff(m, readMarker(t, "orgs/acme/.orgforge")); diff != "" {
		t.Errorf("marker (-want +got):\n%s", diff)
	}

	rec.reset()
	created, err = s.EnsurePrefix(ctx, prefix, m)
	if err != nil || created {
		t.Fatalf("second EnsurePrefix = %v, %v; want no change", created, err)
	}
	if w := rec.writes(); len(w) != 0 {
		t.Errorf("second EnsurePrefix wrote: %q", w)
	}

	owner, found, err := s.PrefixOwner(ctx, prefix)
	if err != nil || !found {
		t.Fatalf("PrefixOwner = %v, %v, %v; want found", owner, found, err)
	}
	if diff := cmp.Diff(m, owner); diff != "" {
		t.Errorf("PrefixOwner (-want +got):\n%s", diff)
	}
}

func TestEnsurePrefixRefusesAPrefixClaimedByAnotherUID(t *testing.T) {
	s, rec := newRecordedService(t)
	ctx := t.Context()
	first := Marker{Org: "claimed", UID: "uid-first"}
	if _, err := s.EnsurePrefix(ctx, "orgs/claimed/", first); err != nil {
		t.Fatalf("EnsurePrefix: %v", err)
	}

	rec.reset()
	_, err := s.EnsurePrefix(ctx, "orgs/claimed/", Marker{Org: "claimed", UID: "uid-second"})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("EnsurePrefix by another UID: err = %v, want ErrConflict", err)
	}
	if w := rec.writes(); len(w) != 0 {
		t.Errorf("a refused EnsurePrefix wrote: %q", w)
	}
	if diff := cmp.Diff(first, readMarker(t, "orgs/claimed/.orgforge")); diff != "" {
		t.Errorf("marker after the refusal (-want +got):\n%s", diff)
	}
}

func TestEnsurePrefixRefusesAMarkerOrgforgeDidNotWrite(t *testing.T) {
	s := newTestService(t)
	ctx := t.Context()
	if err := putObject(ctx, "orgs/foreign/.orgforge", []byte("not json")); err != nil {
		t.Fatalf("putting a foreign marker: %v", err)
	}
	if _, err := s.EnsurePrefix(ctx, "orgs/foreign/", Marker{Org: "foreign", UID: "uid-foreign"}); !errors.Is(err, ErrConflict) {
		t.Errorf("EnsurePrefix over a foreign marker: err = %v, want ErrConflict", err)
	}
	owner, found, err := s.PrefixOwner(ctx, "orgs/foreign/")
	if err != nil || !found || owner != (Marker{}) {
		t.Errorf("PrefixOwner of a foreign marker = %+v, %v, %v; want found with no owner", owner, found, err)
	}
}

func TestPrefixOwnerOfAnUnclaimedPrefixIsNotFound(t *testing.T) {
	s := newTestService(t)
	owner, found, err := s.PrefixOwner(t.Context(), "orgs/nobody/")
	if err != nil || found || owner != (Marker{}) {
		t.Errorf("PrefixOwner = %+v, %v, %v; want not found", owner, found, err)
	}
}

func TestPrefixOperationsRefuseAnInvalidPrefix(t *testing.T) {
	s, rec := newRecordedService(t)
	ctx := t.Context()
	for _, prefix := range invalidPrefixes {
		t.Run(fmt.Sprintf("%.24q", prefix), func(t *testing.T) {
			if _, err := s.EnsurePrefix(ctx, prefix, Marker{Org: "x", UID: "y"}); !errors.Is(err, ErrInvalid) {
				t.Errorf("EnsurePrefix(%q): err = %v, want ErrInvalid", prefix, err)
			}
			if _, err := s.DeletePrefix(ctx, prefix); !errors.Is(err, ErrInvalid) {
				t.Errorf("DeletePrefix(%q): err = %v, want ErrInvalid", prefix, err)
			}
			if _, _, err := s.PrefixUsage(ctx, prefix); !errors.Is(err, ErrInvalid) {
				t.Errorf("PrefixUsage(%q): err = %v, want ErrInvalid", prefix, err)
			}
		})
	}
	if calls := rec.all(); len(calls) != 0 {
		t.Errorf("invalid prefixes reached the server: %q", calls)
	}
}

// putObjects writes n small objects under prefix with the root key.
func putObjects(t *testing.T, prefix string, n int) {
	t.Helper()
	keys := make(chan string)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for key := range keys {
				if err := putObject(t.Context(), key, []byte("0123456789")); err != nil {
					errs <- fmt.Errorf("putting %s: %w", key, err)
				}
			}
		})
	}
	for i := range n {
		keys <- fmt.Sprintf("%sdir%d/object-%05d", prefix, i%7, i)
	}
	close(keys)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestDeletePrefixRemovesEveryObjectAndNothingElse(t *testing.T) {
	s, rec := newRecordedService(t)
	ctx := t.Context()
	putObjects(t, "orgs/purge/", 2500)
	// A prefix that shares the purged one's letters but not its "/".
	putObjects(t, "orgs/purge-kept/", 3)
	putObjects(t, "orgs/purgekept/", 2)

	objects, size, err := s.PrefixUsage(ctx, "orgs/purge/")
	if err != nil || objects != 2500 || size != 25000 {
		t.Fatalf("PrefixUsage before = %d objects, %d bytes, %v; want 2500, 25000", objects, size, err)
	}

	rec.reset()
	deleted, err := s.DeletePrefix(ctx, "orgs/purge/")
	if err != nil || deleted != 2500 {
		t.Fatalf("DeletePrefix = %d, %v; want 2500", deleted, err)
	}
	batches := 0
	for _, c := range rec.writes() {
		if c == "S3 POST /"+stack.Bucket {
			batches++
		}
	}
	if batches != 3 {
		t.Errorf("DeletePrefix sent %d DeleteObjects batches for 2500 objects, want 3: %q", batches, rec.writes())
	}

	got := map[string]int64{}
	for _, p := range []string{"orgs/purge/", "orgs/purge-kept/", "orgs/purgekept/"} {
		if got[p], _, err = s.PrefixUsage(ctx, p); err != nil {
			t.Fatalf("PrefixUsage(%s): %v", p, err)
		}
	}
	want := map[string]int64{"orgs/purge/": 0, "orgs/purge-kept/": 3, "orgs/purgekept/": 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects left per prefix (-want +got):\n%s", diff)
	}

	rec.reset()
	deleted, err = s.DeletePrefix(ctx, "orgs/purge/")
	if err != nil || deleted != 0 {
		t.Errorf("second DeletePrefix = %d, %v; want 0", deleted, err)
	}
	if w := rec.writes(); len(w) != 0 {
		t.Errorf("second DeletePrefix wrote: %q", w)
	}
}

func TestEnsurePrefixLetsOneOfRacingOrganizationsClaimThePrefix(t *testing.T) {
	s := newTestService(t)
	prefix := fmt.Sprintf("orgs/raced-%d/", time.Now().UnixNano())
	const racers = 8
	type result struct {
		uid     string
		created bool
		err     error
	}
	results := make(chan result, racers)
	var wg sync.WaitGroup
	for i := range racers {
		uid := fmt.Sprintf("uid-racer-%d", i)
		wg.Go(func() {
			created, err := s.EnsurePrefix(t.Context(), prefix, Marker{Org: "raced", UID: uid})
			results <- result{uid, created, err}
		})
	}
	wg.Wait()
	close(results)

	var winners []string
	for r := range results {
		switch {
		case r.err == nil && r.created:
			winners = append(winners, r.uid)
		case errors.Is(r.err, ErrConflict):
		default:
			t.Errorf("racer %s: created = %v, err = %v; want created or ErrConflict", r.uid, r.created, r.err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("racers that claimed the prefix: %q, want exactly one", winners)
	}
	if got := readMarker(t, prefix+MarkerName); got.UID != winners[0] {
		t.Errorf("marker uid = %q, want the winner's %q", got.UID, winners[0])
	}
}

func TestPrefixUsageCountsTheOrganizationsObjectsAndNotItsMarker(t *testing.T) {
	s := newTestService(t)
	ctx := t.Context()
	const prefix = "orgs/usage-count/"
	if _, err := s.EnsurePrefix(ctx, prefix, Marker{Org: "usage-count", UID: "u-1"}); err != nil {
		t.Fatal(err)
	}
	for key, size := range map[string]int{"a": 1, "dir/b": 1000, "dir/sub/c": 65536} {
		if err := putObject(ctx, prefix+key, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	objects, size, err := s.PrefixUsage(ctx, prefix)
	if err != nil || objects != 3 || size != 1+1000+65536 {
		t.Errorf("PrefixUsage = %d objects, %d bytes, %v; want 3, %d", objects, size, err, 1+1000+65536)
	}
}

func TestRemarkPrefixReplacesOnlyTheMarkerItWasGiven(t *testing.T) {
	s, _ := newRecordedService(t)
	ctx := t.Context()
	prefix := "orgs/remark/"
	old := Marker{Org: "remark", UID: "uid-old", Cluster: "k1"}
	if _, err := s.EnsurePrefix(ctx, prefix, old); err != nil {
		t.Fatal(err)
	}
	other := Marker{Org: "remark", UID: "uid-other", Cluster: "k1"}
	if err := s.RemarkPrefix(ctx, prefix, other, Marker{Org: "remark", UID: "uid-new", Cluster: "k1"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("RemarkPrefix from a marker the prefix does not carry: err = %v, want ErrConflict", err)
	}
	if diff := cmp.Diff(old, readMarker(t, prefix+MarkerName)); diff != "" {
		t.Fatalf("marker after a refused re-mark (-want +got):\n%s", diff)
	}
	mine := Marker{Org: "remark", UID: "uid-new", Cluster: "k1"}
	if err := s.RemarkPrefix(ctx, prefix, old, mine); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mine, readMarker(t, prefix+MarkerName)); diff != "" {
		t.Errorf("marker after the re-mark (-want +got):\n%s", diff)
	}
	// Another cluster's operator is told whose the prefix is.
	_, err := s.EnsurePrefix(ctx, prefix, Marker{Org: "remark", UID: "uid-elsewhere", Cluster: "k2"})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "cluster identity is k1") {
		t.Errorf("EnsurePrefix of another cluster: %v, want a Conflict naming cluster k1", err)
	}
}

func TestEnsurePrefixAddsTheClusterToAMarkerWrittenBeforeIt(t *testing.T) {
	s, _ := newRecordedService(t)
	ctx := t.Context()
	prefix := "orgs/before/"
	if _, err := s.EnsurePrefix(ctx, prefix, Marker{Org: "before", UID: "uid-b"}); err != nil {
		t.Fatal(err)
	}
	mine := Marker{Org: "before", UID: "uid-b", Cluster: "k1"}
	if created, err := s.EnsurePrefix(ctx, prefix, mine); err != nil || created {
		t.Fatalf("EnsurePrefix over the old marker = %v, %v; want no claim, no error", created, err)
	}
	if diff := cmp.Diff(mine, readMarker(t, prefix+MarkerName)); diff != "" {
		t.Errorf("marker (-want +got):\n%s", diff)
	}
}
