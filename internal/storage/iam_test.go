package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/orgforge/orgforge/internal/retry"
	"github.com/orgforge/orgforge/internal/testutil"
)

// keyDelay bounds how long a new key or policy may take to work: the
// stack's delay and a margin.
const keyDelay = iamDelay + 20*time.Second

// userPolicy reads user's orgforge policy straight from IAM, normalized.
func userPolicy(t *testing.T, s *Service, user string) policyDocument {
	t.Helper()
	out, err := s.iam.GetUserPolicy(t.Context(), &iam.GetUserPolicyInput{UserName: aws.String(user), PolicyName: aws.String(PolicyName)})
	if err != nil {
		t.Fatalf("GetUserPolicy %s: %v", user, err)
	}
	doc, err := url.PathUnescape(aws.ToString(out.PolicyDocument))
	if err != nil {
		t.Fatalf("decoding the policy of %s: %v", user, err)
	}
	var got policyDocument
	if err := jsonStrict(doc, &got); err != nil {
		t.Fatalf("parsing the policy of %s: %v\n%s", user, err, doc)
	}
	return normalizePolicy(got)
}

func wantPolicy(t *testing.T, prefix string) policyDocument {
	t.Helper()
	doc, err := buildPolicy(stack.Bucket, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return normalizePolicy(doc)
}

func userTags(t *testing.T, s *Service, user string) (path string, tags map[string]string) {
	t.Helper()
	out, err := s.iam.GetUser(t.Context(), &iam.GetUserInput{UserName: aws.String(user)})
	if err != nil {
		t.Fatalf("GetUser %s: %v", user, err)
	}
	tags = map[string]string{}
	for _, tag := range out.User.Tags {
		tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	return aws.ToString(out.User.Path), tags
}

// provision claims prefix and creates the org's user with one working key.
func provision(t *testing.T, s *Service, org, prefix string) (string, AccessKey) {
	t.Helper()
	m := Marker{Org: org, UID: "uid-" + org}
	if _, err := s.EnsurePrefix(t.Context(), prefix, m); err != nil {
		t.Fatalf("EnsurePrefix: %v", err)
	}
	user, _, err := s.EnsurePrefixUser(t.Context(), org, m, prefix)
	if err != nil {
		t.Fatalf("EnsurePrefixUser: %v", err)
	}
	key, err := s.CreateAccessKey(t.Context(), user)
	if err != nil {
		t.Fatalf("CreateAccessKey: %v", err)
	}
	waitWorks(t, s, key, prefix)
	return user, key
}

// provisionInParallel provisions organization org under orgs/<org>/ in a
// test that runs in parallel with the others that do: most of their time is
// the wait for the new key to propagate.
func provisionInParallel(t *testing.T, org string) (s *Service, user string, key AccessKey) {
	t.Helper()
	t.Parallel()
	s = newTestService(t)
	user, key = provision(t, s, org, "orgs/"+org+"/")
	return s, user, key
}

// createUser is the first EnsurePrefixUser of organization m.Org, under
// orgs/<org>/; the test fails unless it created the user.
func createUser(t *testing.T, s *Service, m Marker) string {
	t.Helper()
	user, change, err := s.EnsurePrefixUser(t.Context(), m.Org, m, "orgs/"+m.Org+"/")
	if err != nil || change != UserCreated || user != UserName(m.Org) {
		t.Fatalf("first EnsurePrefixUser = %q, %v, %v; want %s, UserCreated", user, change, err, UserName(m.Org))
	}
	return user
}

func waitWorks(t *testing.T, s *Service, key AccessKey, prefix string) {
	t.Helper()
	testutil.Eventually(t, keyDelay, "the new key to work", func() (bool, string) {
		works, err := s.AccessKeyWorks(t.Context(), key.ID, key.Secret, prefix)
		return err == nil && works, fmt.Sprintf("AccessKeyWorks = %v, %v", works, err)
	})
}

func TestEnsurePrefixUserCreatesTheUserOnceAndChangesNothingTheSecondTime(t *testing.T) {
	s, rec := newRecordedService(t)
	ctx := t.Context()
	m := Marker{Org: "twice", UID: "uid-twice"}

	user := createUser(t, s, m)
	path, tags := userTags(t, s, user)
	if path != DefaultIAMPath {
		t.Errorf("user path = %q, want %q", path, DefaultIAMPath)
	}
	if diff := cmp.Diff(map[string]string{TagOrg: "twice", TagUID: "uid-twice"}, tags); diff != "" {
		t.Errorf("user tags (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantPolicy(t, "orgs/twice/"), userPolicy(t, s, user)); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}

	rec.reset()
	user, change, err := s.EnsurePrefixUser(ctx, "twice", m, "orgs/twice/")
	if err != nil || change != UserUnchanged || user != "orgforge-twice" {
		t.Fatalf("second EnsurePrefixUser = %q, %v, %v; want UserUnchanged", user, change, err)
	}
	if w := rec.writes(); len(w) != 0 {
		t.Errorf("second EnsurePrefixUser wrote: %q", w)
	}
}

func TestEnsurePrefixUserRewritesADriftedPolicy(t *testing.T) {
	s := newTestService(t)
	ctx := t.Context()
	m := Marker{Org: "drift", UID: "uid-drift"}
	user := createUser(t, s, m)
	wide := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::` + stack.Bucket + `/*"}}`
	if _, err := s.iam.PutUserPolicy(ctx, &iam.PutUserPolicyInput{
		UserName: aws.String(user), PolicyName: aws.String(PolicyName), PolicyDocument: aws.String(wide),
	}); err != nil {
		t.Fatalf("PutUserPolicy: %v", err)
	}

	_, change, err := s.EnsurePrefixUser(ctx, "drift", m, "orgs/drift/")
	if err != nil || change != PolicyUpdated {
		t.Fatalf("EnsurePrefixUser over a drifted policy = %v, %v; want PolicyUpdated", change, err)
	}
	if diff := cmp.Diff(wantPolicy(t, "orgs/drift/"), userPolicy(t, s, user)); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
}

func TestEnsurePrefixUserRefusesAUserOfAnotherUID(t *testing.T) {
	s, rec := newRecordedService(t)
	ctx := t.Context()
	user := createUser(t, s, Marker{Org: "taken", UID: "uid-first"})

	rec.reset()
	_, _, err := s.EnsurePrefixUser(ctx, "taken", Marker{Org: "taken", UID: "uid-second"}, "orgs/other/")
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("EnsurePrefixUser by another UID: err = %v, want ErrConflict", err)
	}
	if w := rec.writes(); len(w) != 0 {
		t.Errorf("a refused EnsurePrefixUser wrote: %q", w)
	}
	if _, tags := userTags(t, s, user); tags[TagUID] != "uid-first" {
		t.Errorf("uid tag = %q, want uid-first", tags[TagUID])
	}
	if diff := cmp.Diff(wantPolicy(t, "orgs/taken/"), userPolicy(t, s, user)); diff != "" {
		t.Errorf("policy after the refusal (-want +got):\n%s", diff)
	}
}

func TestPrefixUserCallsLeaveAUserOutsideTheIAMPathAlone(t *testing.T) {
	s := newTestService(t)
	ctx := t.Context()
	user := UserName("outsider")
	if _, err := s.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(user)}); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}

	_, _, err := s.EnsurePrefixUser(ctx, "outsider", Marker{Org: "outsider", UID: "uid-outsider"}, "orgs/outsider/")
	if !errors.Is(err, ErrConflict) {
		t.Errorf("EnsurePrefixUser: err = %v, want ErrConflict", err)
	}
	if _, err := s.DeletePrefixUser(ctx, user); !errors.Is(err, ErrConflict) {
		t.Errorf("DeletePrefixUser: err = %v, want ErrConflict", err)
	}
	if path, _ := userTags(t, s, user); path != "/" {
		t.Errorf("the outsider's path = %q, want it left at /", path)
	}
	if policies, err := s.listUserPolicies(ctx, user); err != nil || len(policies) != 0 {
		t.Errorf("the outsider's policies = %q, %v; want none", policies, err)
	}
}

func TestEnsurePrefixUserRefusesInvalidArguments(t *testing.T) {
	s, rec := newRecordedService(t)
	cases := map[string]struct {
		org    string
		uid    string
		prefix string
	}{
		"org not a DNS label": {"Acme_Corp", "u", "orgs/acme/"},
		"org too long":        {strings.Repeat("a", 51), "u", "orgs/acme/"},
		"no uid":              {"acme", "", "orgs/acme/"},
		"wildcard prefix":     {"acme", "u", "orgs/*/"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := s.EnsurePrefixUser(t.Context(), tc.org, Marker{Org: tc.org, UID: tc.uid}, tc.prefix)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
	if calls := rec.all(); len(calls) != 0 {
		t.Errorf("invalid arguments reached the server: %q", calls)
	}
}

// s3Code is the error code of an S3 call, "" for success.
func s3Code(err error) string {
	if err == nil {
		return ""
	}
	if code := errorCode(err); code != "" {
		return code
	}
	return err.Error()
}

func TestPrefixUserKeyIsConfinedToItsPrefix(t *testing.T) {
	s, _, key := provisionInParallel(t, "alpha")
	ctx := t.Context()
	if err := putObject(ctx, "orgs/beta/secret.txt", []byte("beta's")); err != nil {
		t.Fatalf("putting beta's object: %v", err)
	}
	c := stack.Client(key.ID, key.Secret)
	bucket := aws.String(stack.Bucket)
	put := func(key string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String(key), Body: bytes.NewReader([]byte("alpha's"))})
		return err
	}
	get := func(key string) error {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: aws.String(key)})
		if err == nil {
			_, err = io.Copy(io.Discard, out.Body)
			_ = out.Body.Close()
		}
		return err
	}
	list := func(prefix string) error {
		_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket, Prefix: aws.String(prefix)})
		return err
	}
	del := func(key string) error {
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket, Key: aws.String(key)})
		return err
	}

	// In order: the later steps read what the earlier ones wrote.
	steps := []struct {
		name string
		call func() error
		want string
	}{
		{"put in own prefix", func() error { return put("orgs/alpha/data.txt") }, ""},
		{"put in own sub-folder", func() error { return put("orgs/alpha/sub/data.txt") }, ""},
		{"get in own prefix", func() error { return get("orgs/alpha/data.txt") }, ""},
		{"list own prefix", func() error { return list("orgs/alpha/") }, ""},
		{"list own sub-folder", func() error { return list("orgs/alpha/sub/") }, ""},
		{"delete in own prefix", func() error { return del("orgs/alpha/sub/data.txt") }, ""},
		{"get another org's object", func() error { return get("orgs/beta/secret.txt") }, "AccessDenied"},
		{"put in another org's prefix", func() error { return put("orgs/beta/planted.txt") }, "AccessDenied"},
		{"delete in another org's prefix", func() error { return del("orgs/beta/secret.txt") }, "AccessDenied"},
		{"list another org's prefix", func() error { return list("orgs/beta/") }, "AccessDenied"},
		{"list the bucket root", func() error { return list("") }, "AccessDenied"},
		{"list the parent folder", func() error { return list("orgs/") }, "AccessDenied"},
		{"list own prefix without its slash", func() error { return list("orgs/alpha") }, "AccessDenied"},
		{"overwrite own marker", func() error { return put("orgs/alpha/.orgforge") }, "AccessDenied"},
		{"delete own marker", func() error { return del("orgs/alpha/.orgforge") }, "AccessDenied"},
	}
	got, want := map[string]string{}, map[string]string{}
	for _, st := range steps {
		got[st.name], want[st.name] = s3Code(st.call()), st.want
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("error code per call (-want +got):\n%s", diff)
	}

	if owner, _, err := s.PrefixOwner(ctx, "orgs/alpha/"); err != nil || owner.UID != "uid-alpha" {
		t.Errorf("alpha's marker owner = %+v, %v; want uid-alpha", owner, err)
	}
	if data, err := getObject(ctx, "orgs/beta/secret.txt"); err != nil || string(data) != "beta's" {
		t.Errorf("beta's object = %q, %v; want it untouched", data, err)
	}
	if _, err := getObject(ctx, "orgs/beta/planted.txt"); !isNoSuchKey(err) {
		t.Errorf("planted object in beta's prefix: err = %v, want NoSuchKey", err)
	}
}

func TestDeleteAccessKeysLeavesOnlyTheKeptKey(t *testing.T) {
	s, user, old := provisionInParallel(t, "rotate")
	ctx := t.Context()
	current, err := s.CreateAccessKey(ctx, user)
	if err != nil {
		t.Fatalf("CreateAccessKey: %v", err)
	}
	waitWorks(t, s, current, "orgs/rotate/")
	if _, err := s.CreateAccessKey(ctx, user); Classify(err) != retry.ClassConflict || !strings.Contains(err.Error(), "DeleteAccessKeys") {
		t.Errorf("a third CreateAccessKey: err = %v (class %q), want a conflict that says what to do", err, Classify(err))
	}

	deleted, err := s.DeleteAccessKeys(ctx, user, current.ID)
	if err != nil || deleted != 1 {
		t.Fatalf("DeleteAccessKeys = %d, %v; want 1", deleted, err)
	}
	ids, err := s.ListAccessKeys(ctx, user)
	if err != nil {
		t.Fatalf("ListAccessKeys: %v", err)
	}
	if diff := cmp.Diff([]string{current.ID}, ids); diff != "" {
		t.Errorf("keys left (-want +got):\n%s", diff)
	}
	if works, err := s.AccessKeyWorks(ctx, old.ID, old.Secret, "orgs/rotate/"); err != nil || works {
		t.Errorf("AccessKeyWorks(deleted key) = %v, %v; want false", works, err)
	}
	if works, err := s.AccessKeyWorks(ctx, current.ID, current.Secret, "orgs/rotate/"); err != nil || !works {
		t.Errorf("AccessKeyWorks(kept key) = %v, %v; want true", works, err)
	}

	if deleted, err := s.DeleteAccessKeys(ctx, user, current.ID); err != nil || deleted != 0 {
		t.Errorf("second DeleteAccessKeys = %d, %v; want 0", deleted, err)
	}
}

func TestAccessKeyWorksIsFalseForAWrongSecretOrAnotherPrefix(t *testing.T) {
	s, _, key := provisionInParallel(t, "checked")
	ctx := t.Context()
	cases := map[string]struct {
		id, secret, prefix string
		want               bool
	}{
		"its own prefix":       {key.ID, key.Secret, "orgs/checked/", true},
		"a wrong secret":       {key.ID, key.Secret + "x", "orgs/checked/", false},
		"an unknown key":       {"AKIAUNKNOWNUNKNOWN00", key.Secret, "orgs/checked/", false},
		"another org's prefix": {key.ID, key.Secret, "orgs/alpha/", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			works, err := s.AccessKeyWorks(ctx, tc.id, tc.secret, tc.prefix)
			if err != nil || works != tc.want {
				t.Errorf("AccessKeyWorks = %v, %v; want %v", works, err, tc.want)
			}
		})
	}
}

func TestDeletePrefixUserRevokesTheKeyAndRemovesTheUser(t *testing.T) {
	s, user, key := provisionInParallel(t, "leaving")
	ctx := t.Context()

	deleted, err := s.DeletePrefixUser(ctx, user)
	if err != nil || !deleted {
		t.Fatalf("DeletePrefixUser = %v, %v; want deleted", deleted, err)
	}
	if works, err := s.AccessKeyWorks(ctx, key.ID, key.Secret, "orgs/leaving/"); err != nil || works {
		t.Errorf("AccessKeyWorks after DeletePrefixUser = %v, %v; want false", works, err)
	}
	if _, err := s.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(user)}); !isNoSuchEntity(err) {
		t.Errorf("GetUser after DeletePrefixUser: err = %v, want NoSuchEntity", err)
	}
	if _, err := s.ListAccessKeys(ctx, user); !errors.Is(err, ErrNotFound) {
		t.Errorf("ListAccessKeys after DeletePrefixUser: err = %v, want ErrNotFound", err)
	}

	deleted, err = s.DeletePrefixUser(ctx, user)
	if err != nil || deleted {
		t.Errorf("second DeletePrefixUser = %v, %v; want not deleted, no error", deleted, err)
	}
	if n, err := s.DeleteAccessKeys(ctx, user); err != nil || n != 0 {
		t.Errorf("DeleteAccessKeys of a deleted user = %d, %v; want 0", n, err)
	}
}

func TestDeletePrefixUserAlsoRemovesPoliciesOrgforgeDidNotWrite(t *testing.T) {
	s, user, _ := provisionInParallel(t, "extra")
	ctx := t.Context()
	extra := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::` + stack.Bucket + `/public/*"}]}`
	if _, err := s.iam.PutUserPolicy(ctx, &iam.PutUserPolicyInput{
		UserName: aws.String(user), PolicyName: aws.String("hand-made"), PolicyDocument: aws.String(extra),
	}); err != nil {
		t.Fatalf("PutUserPolicy: %v", err)
	}
	if deleted, err := s.DeletePrefixUser(ctx, user); err != nil || !deleted {
		t.Fatalf("DeletePrefixUser = %v, %v; want deleted", deleted, err)
	}
	users := listUsers(t, s)
	if slices.Contains(users, user) {
		t.Errorf("user %s still listed: %q", user, users)
	}
}

func listUsers(t *testing.T, s *Service) []string {
	t.Helper()
	var names []string
	pages := iam.NewListUsersPaginator(s.iam, &iam.ListUsersInput{PathPrefix: aws.String(DefaultIAMPath)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(t.Context())
		if err != nil {
			t.Fatalf("ListUsers: %v", err)
		}
		for _, u := range page.Users {
			names = append(names, aws.ToString(u.UserName))
		}
	}
	return names
}

func TestAUsersTagsGainTheClusterAndAreRetaggedOnlyFromWhatTheyCarry(t *testing.T) {
	s, _ := newRecordedService(t)
	ctx := t.Context()
	before := Marker{Org: "retag", UID: "uid-old"}
	user := createUser(t, s, before)

	// Its own organization adds the cluster to tags written before it.
	owned := Marker{Org: "retag", UID: "uid-old", Cluster: "k1"}
	if _, _, err := s.EnsurePrefixUser(ctx, "retag", owned, "orgs/retag/"); err != nil {
		t.Fatal(err)
	}
	if got, found, err := s.PrefixUserOwner(ctx, "retag"); err != nil || !found || got != owned {
		t.Fatalf("PrefixUserOwner = %+v, %v, %v; want %+v", got, found, err, owned)
	}

	mine := Marker{Org: "retag", UID: "uid-new", Cluster: "k1"}
	if err := s.RetagPrefixUser(ctx, before, mine); !errors.Is(err, ErrConflict) {
		t.Fatalf("RetagPrefixUser from tags the user no longer carries: err = %v, want ErrConflict", err)
	}
	if err := s.RetagPrefixUser(ctx, owned, mine); err != nil {
		t.Fatal(err)
	}
	if _, tags := userTags(t, s, user); tags[TagUID] != "uid-new" || tags[TagCluster] != "k1" || tags[TagOrg] != "retag" {
		t.Errorf("tags after the re-tag = %v", tags)
	}
	// Another cluster's organization is told whose the user is.
	_, _, err := s.EnsurePrefixUser(ctx, "retag", Marker{Org: "retag", UID: "uid-x", Cluster: "k2"}, "orgs/retag/")
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "cluster identity is k1") {
		t.Errorf("EnsurePrefixUser of another cluster: %v, want a Conflict naming cluster k1", err)
	}
}
