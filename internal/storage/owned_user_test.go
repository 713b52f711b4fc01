package storage

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

func TestDeleteOwnedPrefixUserLeavesOthersUsersAlone(t *testing.T) {
	// Parallel: each waits for its new key to propagate.
	t.Parallel()
	s := newTestService(t)
	ctx := t.Context()

	// A user in orgforge's path for another UID, and one with no UID tag.
	user, _ := provision(t, s, "owned", "orgs/owned/")
	untagged := UserName("untagged")
	if _, err := s.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(untagged), Path: aws.String(DefaultIAMPath),
		Tags: []iamtypes.Tag{{Key: aws.String(TagOrg), Value: aws.String("untagged")}}}); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	t.Cleanup(func() { _, _ = s.DeletePrefixUser(ctx, untagged) })
	outsider := UserName("outsider-owned")
	if _, err := s.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(outsider)}); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}

	for _, tc := range []struct {
		user string
		m    Marker
	}{
		{user, Marker{Org: "owned", UID: "uid-someone-else"}},
		{untagged, Marker{Org: "untagged", UID: "uid-untagged"}},
		{outsider, Marker{Org: "outsider-owned", UID: "uid-outsider"}},
	} {
		if deleted, err := s.DeleteOwnedPrefixUser(ctx, tc.user, tc.m); deleted || !errors.Is(err, ErrConflict) {
			t.Errorf("DeleteOwnedPrefixUser(%s, %v) = %v, %v; want ErrConflict", tc.user, tc.m, deleted, err)
		}
		if _, err := s.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(tc.user)}); err != nil {
			t.Errorf("%s is gone: %v", tc.user, err)
		}
	}
	if keys, err := s.ListAccessKeys(ctx, user); err != nil || len(keys) != 1 {
		t.Errorf("keys of %s after the refusal: %v, %v; want its one key", user, keys, err)
	}

	if deleted, err := s.DeleteOwnedPrefixUser(ctx, user, Marker{Org: "owned", UID: "uid-owned"}); !deleted || err != nil {
		t.Fatalf("DeleteOwnedPrefixUser by its owner = %v, %v; want deleted", deleted, err)
	}
	if deleted, err := s.DeleteOwnedPrefixUser(ctx, user, Marker{Org: "owned", UID: "uid-owned"}); deleted || err != nil {
		t.Errorf("second DeleteOwnedPrefixUser = %v, %v; want not deleted, no error", deleted, err)
	}
}
