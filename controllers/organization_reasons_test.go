package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/storage"
)

// permanentErrors are errors of each kind only a person can fix, wrapped as
// the phases wrap them.
func permanentErrors() []error {
	return []error{
		fmt.Errorf("ensuring database org_acme: %w", aurora.ErrConflict),
		fmt.Errorf("%w: Secret org-acme/acme-storage exists", storage.ErrConflict),
		fmt.Errorf("ensuring extensions: %w", aurora.ErrInvalid),
		fmt.Errorf("ensuring prefix: %w", storage.ErrInvalid),
		fmt.Errorf("%w: Secret org-acme/acme-database: its password is empty", errInvalidSecret),
	}
}

func kubeConflict() error {
	return fmt.Errorf("updating Secret org-acme/acme-database: %w",
		apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, "acme-database", errors.New("the object has been modified")))
}

func TestEachErrorOfAPartMapsToItsConditionReasonAndMessage(t *testing.T) {
	refused := fmt.Errorf("ensuring role org_acme: %w", syscall.ECONNREFUSED)
	long := errors.New(strings.Repeat("x ", 400))
	cases := map[string]struct {
		part part
		err  error
		want result
	}{
		"database done": {databasePart, nil,
			result{done: true, reason: tenancyv1alpha1.ReasonProvisioned, message: "Database, role and Secret are provisioned"}},
		"storage done": {storagePart, nil,
			result{done: true, reason: tenancyv1alpha1.ReasonProvisioned, message: "Prefix, access and Secret are provisioned"}},
		"a database that is not ours": {databasePart, permanentErrors()[0],
			result{reason: tenancyv1alpha1.ReasonConflict, message: "ensuring database org_acme: " + aurora.ErrConflict.Error()}},
		"a Secret that is not ours, in the database part": {databasePart, permanentErrors()[1],
			result{reason: tenancyv1alpha1.ReasonConflict, message: permanentErrors()[1].Error()}},
		"a Secret that is not ours, in the storage part": {storagePart, permanentErrors()[1],
			result{reason: tenancyv1alpha1.ReasonConflict, message: permanentErrors()[1].Error()}},
		"an extension the server refuses": {databasePart, permanentErrors()[2],
			result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: permanentErrors()[2].Error()}},
		"a prefix S3 refuses": {storagePart, permanentErrors()[3],
			result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: permanentErrors()[3].Error()}},
		"a Secret edited into an unusable password": {databasePart, permanentErrors()[4],
			result{reason: tenancyv1alpha1.ReasonInvalidSecret, message: permanentErrors()[4].Error()}},
		"a Kubernetes API error is not an outage of PostgreSQL": {databasePart, kubeConflict(),
			result{reason: tenancyv1alpha1.ReasonKubernetesError, message: conditionMessage(kubeConflict())}},
		"a Kubernetes API error is not an outage of S3": {storagePart, kubeConflict(),
			result{reason: tenancyv1alpha1.ReasonKubernetesError, message: conditionMessage(kubeConflict())}},
		"PostgreSQL refuses connections": {databasePart, refused,
			result{reason: tenancyv1alpha1.ReasonDatabaseUnavailable, message: "PostgreSQL at db:5432 is unavailable (network); retrying with backoff"}},
		"PostgreSQL shuts down": {databasePart, fmt.Errorf("ensuring role: %w", &pgconn.PgError{Code: "57P01"}),
			result{reason: tenancyv1alpha1.ReasonDatabaseUnavailable, message: "PostgreSQL at db:5432 is unavailable (unavailable); retrying with backoff"}},
		"S3 refuses connections": {storagePart, refused,
			result{reason: tenancyv1alpha1.ReasonStorageUnavailable, message: "S3 or IAM is unavailable (network); retrying with backoff"}},
		"a lasting database error says what it is": {databasePart, errors.New("ensuring role org_acme: permission denied"),
			result{reason: tenancyv1alpha1.ReasonDatabaseUnavailable, message: "ensuring role org_acme: permission denied"}},
		"a canceled reconcile is interrupted, not an outage": {storagePart, fmt.Errorf("ensuring prefix: %w", context.Canceled),
			result{reason: tenancyv1alpha1.ReasonStorageUnavailable, message: "interrupted; retrying"}},
		"a long error is cut to a bounded line": {storagePart, long,
			result{reason: tenancyv1alpha1.ReasonStorageUnavailable, message: strings.Repeat("x ", 256) + "..."}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			what := "S3 or IAM"
			if tc.part.service == databasePart.service {
				what = "PostgreSQL at db:5432"
			}
			if diff := cmp.Diff(tc.want, tc.part.result(tc.err, what), cmp.AllowUnexported(result{})); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOnlyTheReasonsOfPermanentErrorsNeedAPerson(t *testing.T) {
	cases := map[string]bool{
		tenancyv1alpha1.ReasonInvalidSpec:         true,
		tenancyv1alpha1.ReasonConflict:            true,
		tenancyv1alpha1.ReasonInvalidSecret:       true,
		tenancyv1alpha1.ReasonKubernetesError:     false,
		tenancyv1alpha1.ReasonDatabaseUnavailable: false,
		tenancyv1alpha1.ReasonStorageUnavailable:  false,
		tenancyv1alpha1.ReasonProvisioning:        false,
		"":                                        false,
	}
	for reason, want := range cases {
		if got := needsPerson(reason); got != want {
			t.Errorf("needsPerson(%q) = %v, want %v", reason, got, want)
		}
	}
}

func TestBothPartsReportOneCauseThatStopsTheReconcileEarly(t *testing.T) {
	var o outcome
	o.both(invalidSpec(fmt.Errorf("ensuring extensions: %w", aurora.ErrInvalid)))
	want := result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: "ensuring extensions: " + aurora.ErrInvalid.Error()}
	if diff := cmp.Diff(outcome{database: want, storage: want}, o, cmp.AllowUnexported(outcome{}, result{})); diff != "" {
		t.Errorf("outcome (-want +got):\n%s", diff)
	}
	o.both(waitingForNamespace("org-acme", errors.New("namespace org-acme is being deleted")))
	want = result{reason: tenancyv1alpha1.ReasonProvisioning, message: "Waiting for namespace org-acme: namespace org-acme is being deleted"}
	if diff := cmp.Diff(outcome{database: want, storage: want}, o, cmp.AllowUnexported(outcome{}, result{})); diff != "" {
		t.Errorf("outcome (-want +got):\n%s", diff)
	}
}

func TestEventNoteIsOneCapitalisedSentenceThatFitsAnEvent(t *testing.T) {
	long := strings.Repeat("a", eventNoteLimit)
	cases := map[string]struct {
		notes []string
		want  string
	}{
		"nothing":      {nil, ""},
		"one note":     {[]string{"created namespace org-acme"}, "Created namespace org-acme"},
		"several":      {[]string{"created role org_acme", "wrote Secret org-acme/acme-database"}, "Created role org_acme; wrote Secret org-acme/acme-database"},
		"exactly full": {[]string{long}, "A" + long[1:]},
		"too long":     {[]string{long, "b"}, "A" + long[1:eventNoteLimit-3] + "..."},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := eventNote(tc.notes)
			if got != tc.want {
				t.Errorf("eventNote = %q, want %q", got, tc.want)
			}
			if len(got) > eventNoteLimit {
				t.Errorf("eventNote is %d bytes, over the limit of %d", len(got), eventNoteLimit)
			}
		})
	}
}
