package storage

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/google/go-cmp/cmp"
)

// testBoundary is a permissions boundary ARN. versitygw has no managed
// policies, so it names none that exists; the tests check what is sent.
const testBoundary = "arn:aws:iam::111122223333:policy/orgforge-tenant-boundary"

// newBoundedService is a recorded service that sets testBoundary.
func newBoundedService(t *testing.T) (*Service, *recorder) {
	t.Helper()
	cfg := testConfig(t)
	cfg.PermissionsBoundary = testBoundary
	return newRecordedServiceWith(t, cfg)
}

// params keeps the parameters of sent IAM requests that a test compares.
func params(forms []url.Values, keys ...string) []map[string]string {
	var out []map[string]string
	for _, f := range forms {
		m := map[string]string{}
		for _, k := range keys {
			if v, ok := f[k]; ok {
				m[k] = strings.Join(v, ",")
			}
		}
		out = append(out, m)
	}
	return out
}

func TestEnsurePrefixUserCreatesTheUserUnderThePermissionsBoundary(t *testing.T) {
	s, rec := newBoundedService(t)
	m := Marker{Org: "bounded", UID: "uid-bounded"}

	user := createUser(t, s, m)
	want := []map[string]string{{"UserName": user, "Path": DefaultIAMPath, "PermissionsBoundary": testBoundary}}
	if diff := cmp.Diff(want, params(rec.sent("CreateUser"), "UserName", "Path", "PermissionsBoundary")); diff != "" {
		t.Errorf("CreateUser requests sent (-want +got):\n%s", diff)
	}
	// The gateway took the request: the user is there, ours, with its policy.
	if path, tags := userTags(t, s, user); path != DefaultIAMPath || tags[TagUID] != "uid-bounded" {
		t.Errorf("user path %q, uid tag %q; want %s, uid-bounded", path, tags[TagUID], DefaultIAMPath)
	}
	if diff := cmp.Diff(wantPolicy(t, "orgs/bounded/"), userPolicy(t, s, user)); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
}

func TestEnsurePrefixUserWithoutABoundaryConfiguredSendsNone(t *testing.T) {
	s, rec := newRecordedService(t)
	ctx := t.Context()
	m := Marker{Org: "unbounded", UID: "uid-unbounded"}
	createUser(t, s, m)
	created := rec.sent("CreateUser")
	if len(created) != 1 {
		t.Fatalf("sent %d CreateUser requests, want 1", len(created))
	}
	if _, ok := created[0]["PermissionsBoundary"]; ok {
		t.Errorf("CreateUser carried PermissionsBoundary %q with none configured", created[0].Get("PermissionsBoundary"))
	}
	rec.reset()
	if _, change, err := s.EnsurePrefixUser(ctx, "unbounded", m, "orgs/unbounded/"); err != nil || change != UserUnchanged {
		t.Fatalf("second EnsurePrefixUser = %v, %v; want UserUnchanged", change, err)
	}
	if w := rec.writes(); len(w) != 0 {
		t.Errorf("second EnsurePrefixUser wrote: %q", w)
	}
}

// An operator that starts with a boundary finds the users it created
// without one. It sets the boundary before anything else: on AWS its policy
// lets it write a user's policy only once the user has the boundary.
// versitygw v1.8.0 has no PutUserPermissionsBoundary; the service must say
// so, and write nothing else.
func TestEnsurePrefixUserSetsTheBoundaryOnAUserOfOursThatLacksIt(t *testing.T) {
	ctx := t.Context()
	m := Marker{Org: "rebound", UID: "uid-rebound"}
	user := createUser(t, newTestService(t), m)

	s, rec := newBoundedService(t)
	_, _, err := s.EnsurePrefixUser(ctx, "rebound", m, "orgs/rebound/")
	want := []map[string]string{{"UserName": user, "PermissionsBoundary": testBoundary}}
	if diff := cmp.Diff(want, params(rec.sent("PutUserPermissionsBoundary"), "UserName", "PermissionsBoundary")); diff != "" {
		t.Errorf("PutUserPermissionsBoundary requests sent (-want +got):\n%s", diff)
	}
	if err == nil || !strings.Contains(err.Error(), "does not support permissions boundaries") {
		t.Errorf("err = %v, want versitygw's lack of PutUserPermissionsBoundary reported as such", err)
	}
	if diff := cmp.Diff([]string{"IAM PutUserPermissionsBoundary"}, rec.writes()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}

	// Another organization's user gets no boundary from this one.
	rec.reset()
	if _, _, err := s.EnsurePrefixUser(ctx, "rebound", Marker{Org: "rebound", UID: "uid-other"}, "orgs/rebound/"); !errors.Is(err, ErrConflict) {
		t.Errorf("EnsurePrefixUser by another UID: err = %v, want ErrConflict", err)
	}
	if w := rec.writes(); len(w) != 0 {
		t.Errorf("a refused EnsurePrefixUser wrote: %q", w)
	}
}

func TestNeedsBoundary(t *testing.T) {
	const other = "arn:aws:iam::111122223333:policy/something-else"
	with := func(arn string) *iamtypes.User {
		return &iamtypes.User{UserName: aws.String("orgforge-x"), PermissionsBoundary: &iamtypes.AttachedPermissionsBoundary{
			PermissionsBoundaryArn:  aws.String(arn),
			PermissionsBoundaryType: iamtypes.PermissionsBoundaryAttachmentTypePolicy,
		}}
	}
	none := &iamtypes.User{UserName: aws.String("orgforge-x")}
	cases := map[string]struct {
		user *iamtypes.User
		want string
		need bool
	}{
		"none wanted, none set":         {none, "", false},
		"none wanted, one set is kept":  {with(other), "", false},
		"wanted, none set":              {none, testBoundary, true},
		"wanted, the same set":          {with(testBoundary), testBoundary, false},
		"wanted, another set":           {with(other), testBoundary, true},
		"wanted, an empty boundary set": {with(""), testBoundary, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := needsBoundary(tc.user, tc.want); got != tc.need {
				t.Errorf("needsBoundary = %v, want %v", got, tc.need)
			}
		})
	}
}
