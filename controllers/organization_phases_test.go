package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// stepCount is how many durations stepDuration holds for step.
func stepCount(t *testing.T, step string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := stepDuration.WithLabelValues(step).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// fakePhase is a phase that notes its name in ran and then does what act
// says: "ok", "fail" or "panic".
type fakePhase struct {
	name, step, act string
	skip            bool
}

func TestRunPhasesRunsInOrderTimesNamedStepsAndStopsAtTheFirstFailure(t *testing.T) {
	cases := map[string]struct {
		phases []fakePhase
		ran    []string
		err    string
		// timed is how many durations each step gains; steps are named per
		// case, so the manager's own reconciles cannot add to them.
		timed map[string]uint64
	}{
		"every phase runs in order, each with a step timed and none without": {
			phases: []fakePhase{{"a", "runnerA", "ok", false}, {"b", "", "ok", false}, {"c", "runnerC", "ok", false}},
			ran:    []string{"a", "b", "c"},
			timed:  map[string]uint64{"runnerA": 1, "runnerC": 1, "": 0},
		},
		"an error is returned and stops the phases after it": {
			phases: []fakePhase{{"a", "runnerFailA", "ok", false}, {"b", "runnerFailB", "fail", false}, {"c", "runnerFailC", "ok", false}},
			ran:    []string{"a", "b"},
			err:    "b failed",
			timed:  map[string]uint64{"runnerFailA": 1, "runnerFailB": 1, "runnerFailC": 0},
		},
		"a panic becomes the part's error, records no duration and stops the phases after it": {
			phases: []fakePhase{{"a", "runnerPanicA", "panic", false}, {"b", "runnerPanicB", "ok", false}},
			ran:    []string{"a"},
			err:    "internal error in the test steps: a panicked",
			timed:  map[string]uint64{"runnerPanicA": 0, "runnerPanicB": 0},
		},
		"a phase whose when is false neither runs nor is timed": {
			phases: []fakePhase{{"a", "runnerSkipA", "ok", true}, {"b", "runnerSkipB", "ok", false}},
			ran:    []string{"b"},
			timed:  map[string]uint64{"runnerSkipA": 0, "runnerSkipB": 1},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := map[string]uint64{}
			for step := range tc.timed {
				before[step] = stepCount(t, step)
			}
			var ran []string
			var phases []phase
			for _, f := range tc.phases {
				p := phase{step: f.step, run: func(context.Context, *scope) error {
					ran = append(ran, f.name)
					switch f.act {
					case "fail":
						return errors.New(f.name + " failed")
					case "panic":
						panic(f.name + " panicked")
					}
					return nil
				}}
				if f.skip {
					p.when = func(*scope) bool { return false }
				}
				phases = append(phases, p)
			}

			err := runPhases(context.Background(), &scope{}, "test", phases)

			if got := errText(err); got != tc.err {
				t.Errorf("error %q, want %q", got, tc.err)
			}
			if diff := cmp.Diff(tc.ran, ran); diff != "" {
				t.Errorf("phases that ran (-want +got):\n%s", diff)
			}
			got := map[string]uint64{}
			for step := range tc.timed {
				got[step] = stepCount(t, step) - before[step]
			}
			if diff := cmp.Diff(tc.timed, got); diff != "" {
				t.Errorf("durations recorded per step (-want +got):\n%s", diff)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestAPhaseReadsWhatAnEarlierPhaseLeftOnTheScope(t *testing.T) {
	var seen string
	err := runPhases(context.Background(), &scope{}, "test", []phase{
		{run: func(_ context.Context, s *scope) error { s.prefix = "orgs/acme/"; return nil }},
		{run: func(_ context.Context, s *scope) error { seen = s.prefix; return nil }},
	})
	if err != nil || seen != "orgs/acme/" {
		t.Errorf("second phase saw prefix %q, error %v; want %q, nil", seen, err, "orgs/acme/")
	}
}

func TestTheDatabaseAndStorageStepsKeepTheirMetricNames(t *testing.T) {
	// orgforge_reconcile_step_duration_seconds's steps are documented in
	// docs/operations.md and read by the benchmark: a phase list may change,
	// its step names may not.
	r := &OrganizationReconciler{}
	steps := func(phases []phase) []string {
		var out []string
		for _, p := range phases {
			if p.step != "" {
				out = append(out, p.step)
			}
		}
		return out
	}
	want := []string{"role", "database", "secure", "extensions", "logins", "databaseSecret"}
	if diff := cmp.Diff(want, steps(r.databasePhases())); diff != "" {
		t.Errorf("database steps (-want +got):\n%s", diff)
	}
	want = []string{"prefix", "accessKey", "storageSecret"}
	if diff := cmp.Diff(want, steps(r.storagePhases())); diff != "" {
		t.Errorf("storage steps (-want +got):\n%s", diff)
	}
}

func TestRetryableDropsOnlyWhatAPersonMustFix(t *testing.T) {
	for _, err := range permanentErrors() {
		if retryable(err) != nil {
			t.Errorf("retryable(%v) = %v; a permanent error is reported, not retried", err, retryable(err))
		}
	}
	for name, err := range map[string]error{
		"outage":           errors.New("dial tcp: connection refused"),
		"Kubernetes error": kubeConflict(),
	} {
		if retryable(err) != err {
			t.Errorf("%s: retryable(%v) = %v; want the error itself", name, err, retryable(err))
		}
	}
	if retryable(nil) != nil {
		t.Error("retryable(nil) is not nil")
	}
}

func TestAPanicInAPartIsAnErrorNamingThatPartsSteps(t *testing.T) {
	err := runPhases(context.Background(), &scope{}, "storage", []phase{{run: func(context.Context, *scope) error {
		var s *scope
		_ = s.prefix
		return nil
	}}})
	if err == nil || !strings.HasPrefix(err.Error(), "internal error in the storage steps: ") {
		t.Errorf("error %v; want one naming the storage steps", err)
	}
}
