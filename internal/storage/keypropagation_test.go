package storage

import (
	"fmt"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
)

func TestAccessKeyUsableTrustsANewListedKeyOnlyUntilTheAllowanceHasPassed(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.KeyPropagation = iamDelay
	s, err := New(t.Context(), cfg, testr.New(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	ctx := t.Context()
	const prefix = "orgs/young/"
	m := Marker{Org: "young", UID: "uid-young"}
	if _, err := s.EnsurePrefix(ctx, prefix, m); err != nil {
		t.Fatalf("EnsurePrefix: %v", err)
	}
	user, _, err := s.EnsurePrefixUser(ctx, "young", m, prefix)
	if err != nil {
		t.Fatalf("EnsurePrefixUser: %v", err)
	}
	key, err := s.CreateAccessKey(ctx, user)
	if err != nil {
		t.Fatalf("CreateAccessKey: %v", err)
	}
	keys, err := s.AccessKeys(ctx, user)
	if err != nil || len(keys) != 1 || keys[0].ID != key.ID || keys[0].Created.IsZero() {
		t.Fatalf("AccessKeys = %+v, %v; want the new key with its CreateDate", keys, err)
	}
	if works, err := s.AccessKeyWorks(ctx, key.ID, key.Secret, prefix); err != nil || works {
		t.Fatalf("AccessKeyWorks of a key made a moment ago = %v, %v; want false, as S3 on AWS may answer", works, err)
	}

	usable := func(user, id, secret string) string {
		ok, err := s.AccessKeyUsable(ctx, user, id, secret, prefix)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprint(ok)
	}
	young := map[string]string{
		"its key":                    usable(user, key.ID, key.Secret),
		"its key, a wrong secret":    usable(user, key.ID, key.Secret+"x"),
		"a key IAM does not list":    usable(user, "AKIAUNKNOWNUNKNOWN00", key.Secret),
		"a user that does not exist": usable(UserName("nobody"), key.ID, key.Secret),
	}
	want := map[string]string{
		"its key":                    "true",
		"its key, a wrong secret":    "true",
		"a key IAM does not list":    "false",
		"a user that does not exist": "false",
	}
	if diff := cmp.Diff(want, young); diff != "" {
		t.Errorf("AccessKeyUsable within the allowance (-want +got):\n%s", diff)
	}

	// Once S3 honours the key, its allowance has passed too: a failing
	// secret is no longer trusted, and the key is judged by S3 alone.
	waitWorks(t, s, key, prefix)
	old := map[string]string{
		"its key":                 usable(user, key.ID, key.Secret),
		"its key, a wrong secret": usable(user, key.ID, key.Secret+"x"),
	}
	if diff := cmp.Diff(map[string]string{"its key": "true", "its key, a wrong secret": "false"}, old); diff != "" {
		t.Errorf("AccessKeyUsable after the allowance (-want +got):\n%s", diff)
	}
}
