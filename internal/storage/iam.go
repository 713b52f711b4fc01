package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// PolicyName is the name of the inline policy that confines an
// organization's IAM user to its prefix.
const PolicyName = "orgforge-prefix"

// Tags on the IAM users orgforge creates. The UID tag decides ownership.
const (
	TagOrg = "orgforge.io/organization"
	TagUID = "orgforge.io/uid"
	// TagCluster is the owning operator's cluster identity; users tagged
	// before it was recorded have none, and are taken as this cluster's.
	TagCluster = "orgforge.io/cluster"
)

// userNamePrefix keeps orgforge's users apart from anyone else's; with a
// 50-character organization name the user name stays under IAM's 64.
const userNamePrefix = "orgforge-"

// AccessKey is an IAM access key. Secret is only ever known at creation.
type AccessKey struct {
	ID     string
	Secret string
}

// UserName is the IAM user of organization org.
func UserName(org string) string { return userNamePrefix + org }

// UserName is the IAM user of organization org, as the package's UserName;
// a method so that the reconciler's narrow interface can carry it.
func (s *Service) UserName(org string) string { return UserName(org) }

func isNoSuchEntity(err error) bool {
	var nse *iamtypes.NoSuchEntityException
	return errors.As(err, &nse) || errorCode(err) == "NoSuchEntity"
}

// UserChange is what EnsurePrefixUser did.
type UserChange int

const (
	// UserUnchanged: the user and its policy were already as wanted.
	UserUnchanged UserChange = iota
	// UserCreated: the user is new, so it has its policy and no keys yet.
	UserCreated
	// PolicyUpdated: the user existed and its policy was written (its
	// permissions boundary may have been set too).
	PolicyUpdated
	// BoundaryUpdated: the user existed and was given the configured
	// permissions boundary; its policy was already as wanted.
	BoundaryUpdated
)

// EnsurePrefixUser makes sure organization org has an IAM user, under the
// configured IAM path and tagged with its UID, whose inline policy confines
// it to prefix (see PolicyDocument), and, when one is configured, under the
// permissions boundary. It reports whether it created the user or changed
// it: a user it created holds no access key, so a caller need not look for
// stale ones. A user of that name that is not orgforge's, or belongs to
// another UID, is ErrConflict and is not touched.
func (s *Service) EnsurePrefixUser(ctx context.Context, org string, m Marker, prefix string) (user string, change UserChange, err error) {
	if err := validateOrg(org); err != nil {
		return "", UserUnchanged, err
	}
	if m.UID == "" {
		return "", UserUnchanged, fmt.Errorf("%w: organization %q has no UID", ErrInvalid, org)
	}
	want, err := buildPolicy(s.cfg.Bucket, prefix)
	if err != nil {
		return "", UserUnchanged, err
	}
	user = UserName(org)

	existing, err := s.ensureUser(ctx, user, org, m)
	if err != nil {
		return user, UserUnchanged, err
	}
	created := existing == nil
	// A user created a moment ago has its boundary from CreateUser. On one
	// that existed the boundary comes first: until the user has it, the
	// operator's IAM policy may not write its policy.
	var bounded bool
	if !created {
		if bounded, err = s.ensureBoundary(ctx, existing); err != nil {
			return user, UserUnchanged, err
		}
	}
	// A user created a moment ago has no policy to read.
	updated, err := s.ensurePolicy(ctx, user, want, !created)
	switch {
	case created:
		// Even when the policy failed: the caller must know the user is
		// new, and the next call writes the policy.
		return user, UserCreated, err
	case err != nil:
		return user, UserUnchanged, err
	case updated:
		return user, PolicyUpdated, nil
	case bounded:
		return user, BoundaryUpdated, nil
	}
	return user, UserUnchanged, nil
}

// ensureUser creates user for organization org unless it exists. It
// returns the user it found, checked to be org's, or nil when it created it.
func (s *Service) ensureUser(ctx context.Context, user, org string, m Marker) (existing *iamtypes.User, err error) {
	for range 2 {
		got, err := s.getUser(ctx, user)
		switch {
		case err != nil:
			return nil, err
		case got != nil:
			if err := s.checkUser(got, m); err != nil {
				return nil, err
			}
			if userMarker(got).Cluster == "" && m.Cluster != "" {
				// Tagged before users recorded the cluster: recorded now.
				if err := s.tagUser(ctx, user, m); err != nil {
					return nil, err
				}
			}
			return got, nil
		}

		err = s.do(ctx, "CreateUser", func(ctx context.Context) error {
			_, err := s.iam.CreateUser(ctx, &iam.CreateUserInput{
				UserName:            aws.String(user),
				Path:                aws.String(s.cfg.IAMPath),
				PermissionsBoundary: s.permissionsBoundary(),
				Tags:                markerTags(org, m),
			})
			return err
		})
		var exists *iamtypes.EntityAlreadyExistsException
		switch {
		case err == nil:
			s.log.Info("Created IAM user", "user", user, "organization", org, "uid", m.UID,
				"permissionsBoundary", s.cfg.PermissionsBoundary)
			return nil, nil
		case errors.As(err, &exists):
			// Created meanwhile, perhaps by an earlier attempt whose
			// answer was lost: read it again to see whose it is.
			continue
		default:
			return nil, fmt.Errorf("creating IAM user %q: %w", user, err)
		}
	}
	return nil, fmt.Errorf("creating IAM user %q: it keeps appearing and disappearing; another writer is racing orgforge", user)
}

func (s *Service) checkUser(u *iamtypes.User, m Marker) error {
	name := aws.ToString(u.UserName)
	if aws.ToString(u.Path) != s.cfg.IAMPath {
		return fmt.Errorf("%w: IAM user %q exists outside orgforge's path %s; delete or rename it, or give the organization another name",
			ErrConflict, name, s.cfg.IAMPath)
	}
	got := userMarker(u)
	if got.UID != m.UID {
		owner := fmt.Sprintf("the organization with uid %q", got.UID)
		if !m.sameCluster(got) {
			owner = m.Holder(got)
		}
		return fmt.Errorf("%w: IAM user %q belongs to %s; delete that user first (DeletePrefixUser) or give the organization another name",
			ErrConflict, name, owner)
	}
	return nil
}

// userMarker reads the organization an IAM user is tagged for.
func userMarker(u *iamtypes.User) Marker {
	var m Marker
	for _, t := range u.Tags {
		// IAM compares tag keys without case.
		switch k, v := aws.ToString(t.Key), aws.ToString(t.Value); {
		case strings.EqualFold(k, TagOrg):
			m.Org = v
		case strings.EqualFold(k, TagUID):
			m.UID = v
		case strings.EqualFold(k, TagCluster):
			m.Cluster = v
		}
	}
	return m
}

// markerTags are the tags that mark an IAM user as organization org's.
func markerTags(org string, m Marker) []iamtypes.Tag {
	tags := []iamtypes.Tag{
		{Key: aws.String(TagOrg), Value: aws.String(org)},
		{Key: aws.String(TagUID), Value: aws.String(m.UID)},
	}
	if m.Cluster != "" {
		tags = append(tags, iamtypes.Tag{Key: aws.String(TagCluster), Value: aws.String(m.Cluster)})
	}
	return tags
}

// tagUser writes m's tags on user, replacing the values of those keys.
func (s *Service) tagUser(ctx context.Context, user string, m Marker) error {
	err := s.do(ctx, "TagUser", func(ctx context.Context) error {
		_, err := s.iam.TagUser(ctx, &iam.TagUserInput{UserName: aws.String(user), Tags: markerTags(m.Org, m)})
		return err
	})
	if err != nil {
		return fmt.Errorf("tagging IAM user %q: %w", user, err)
	}
	return nil
}

// PrefixUserOwner reads the organization the IAM user of org is tagged for,
// and whether there is such a user under orgforge's IAM path. A user of
// that name outside the path is ErrConflict.
func (s *Service) PrefixUserOwner(ctx context.Context, org string) (Marker, bool, error) {
	if err := validateOrg(org); err != nil {
		return Marker{}, false, err
	}
	user := UserName(org)
	got, err := s.getUser(ctx, user)
	if err != nil || got == nil {
		return Marker{}, false, err
	}
	if aws.ToString(got.Path) != s.cfg.IAMPath {
		return Marker{}, true, fmt.Errorf("%w: IAM user %q exists outside orgforge's path %s", ErrConflict, user, s.cfg.IAMPath)
	}
	return userMarker(got), true, nil
}

// RetagPrefixUser tags the IAM user of organization to.Org as to's: the
// adoption of a user an earlier organization of that name left, tagged
// exactly from. A user tagged otherwise is ErrConflict and is not touched.
func (s *Service) RetagPrefixUser(ctx context.Context, from, to Marker) error {
	if err := validateOrg(to.Org); err != nil {
		return err
	}
	if to.UID == "" {
		return fmt.Errorf("%w: organization %q has no UID", ErrInvalid, to.Org)
	}
	user := UserName(to.Org)
	got, err := s.getUser(ctx, user)
	switch {
	case err != nil:
		return err
	case got == nil:
		return fmt.Errorf("%w: IAM user %q is gone", ErrNotFound, user)
	case aws.ToString(got.Path) != s.cfg.IAMPath || userMarker(got) != from:
		return fmt.Errorf("%w: IAM user %q is no longer tagged for organization %q (uid %s)", ErrConflict, user, from.Org, from.UID)
	}
	if err := s.tagUser(ctx, user, to); err != nil {
		return err
	}
	s.log.Info("Re-tagged IAM user", "user", user, "organization", to.Org, "fromUID", from.UID, "uid", to.UID)
	return nil
}

// ensurePolicy writes user's inline policy unless read is set and the
// policy IAM holds is already want. A new user is not read: it has none.
func (s *Service) ensurePolicy(ctx context.Context, user string, want policyDocument, read bool) (changed bool, err error) {
	if read {
		current, found, err := s.userPolicy(ctx, user)
		if err != nil {
			return false, err
		}
		if found && samePolicy(current, want) {
			return false, nil
		}
	}
	doc, err := encodePolicy(want)
	if err != nil {
		return false, err
	}
	err = s.do(ctx, "PutUserPolicy", func(ctx context.Context) error {
		_, err := s.iam.PutUserPolicy(ctx, &iam.PutUserPolicyInput{
			UserName:       aws.String(user),
			PolicyName:     aws.String(PolicyName),
			PolicyDocument: aws.String(doc),
		})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("writing policy %s of IAM user %q: %w", PolicyName, user, err)
	}
	s.log.Info("Wrote IAM user policy", "user", user, "policy", PolicyName)
	return true, nil
}

// userPolicy reads user's inline policy, decoded; found is false when the
// user has none.
func (s *Service) userPolicy(ctx context.Context, user string) (doc string, found bool, err error) {
	out, err := call(ctx, s, "GetUserPolicy", func(ctx context.Context) (*iam.GetUserPolicyOutput, error) {
		return s.iam.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: aws.String(user), PolicyName: aws.String(PolicyName)})
	})
	switch {
	case isNoSuchEntity(err):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("reading policy %s of IAM user %q: %w", PolicyName, user, err)
	}
	doc = aws.ToString(out.PolicyDocument)
	// IAM returns the document URL-encoded (RFC 3986).
	if decoded, derr := url.PathUnescape(doc); derr == nil {
		doc = decoded
	}
	return doc, true, nil
}

// CreateAccessKey creates a new access key for user. IAM allows two per
// user; DeleteAccessKeys makes room. The secret is returned once, here.
func (s *Service) CreateAccessKey(ctx context.Context, user string) (AccessKey, error) {
	if user == "" {
		return AccessKey{}, fmt.Errorf("%w: empty IAM user name", ErrInvalid)
	}
	out, err := call(ctx, s, "CreateAccessKey", func(ctx context.Context) (*iam.CreateAccessKeyOutput, error) {
		return s.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(user)})
	})
	switch {
	case isNoSuchEntity(err):
		return AccessKey{}, fmt.Errorf("creating an access key for IAM user %q: %w: %w", user, ErrNotFound, err)
	case errorCode(err) == "LimitExceeded":
		return AccessKey{}, fmt.Errorf("creating an access key for IAM user %q: it has as many keys as IAM allows; delete the unused ones (DeleteAccessKeys) first: %w", user, err)
	case err != nil:
		return AccessKey{}, fmt.Errorf("creating an access key for IAM user %q: %w", user, err)
	}
	s.log.Info("Created access key", "user", user)
	return AccessKey{ID: aws.ToString(out.AccessKey.AccessKeyId), Secret: aws.ToString(out.AccessKey.SecretAccessKey)}, nil
}

// KeyInfo is what IAM tells of an access key besides its secret.
type KeyInfo struct {
	ID string
	// Created is IAM's CreateDate, to the second; zero when the server does
	// not report it.
	Created time.Time
	// Active is IAM's status Active; false for Inactive, and when the
	// server reports no status.
	Active bool
}

// ListAccessKeys returns the ids of user's access keys; ErrNotFound when
// there is no such user.
func (s *Service) ListAccessKeys(ctx context.Context, user string) ([]string, error) {
	keys, err := s.AccessKeys(ctx, user)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	return ids, nil
}

// AccessKeys returns user's access keys with their creation times;
// ErrNotFound when there is no such user.
func (s *Service) AccessKeys(ctx context.Context, user string) ([]KeyInfo, error) {
	if user == "" {
		return nil, fmt.Errorf("%w: empty IAM user name", ErrInvalid)
	}
	var keys []KeyInfo
	pages := iam.NewListAccessKeysPaginator(s.iam, &iam.ListAccessKeysInput{UserName: aws.String(user)})
	err := paginate(ctx, s, "ListAccessKeys", pages, func(page *iam.ListAccessKeysOutput) bool {
		for _, k := range page.AccessKeyMetadata {
			keys = append(keys, KeyInfo{ID: aws.ToString(k.AccessKeyId), Created: aws.ToTime(k.CreateDate),
				Active: k.Status == iamtypes.StatusTypeActive})
		}
		return true
	})
	if err != nil {
		if isNoSuchEntity(err) {
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return nil, fmt.Errorf("listing access keys of IAM user %q: %w", user, err)
	}
	return keys, nil
}

// AccessKeyUsable reports whether the key id/secret of user may stay in use
// for prefix: it works (AccessKeyWorks), or IAM lists it for user and
// created it less than the propagation allowance (Config.KeyPropagation)
// ago. AWS IAM is eventually consistent: S3 may refuse a key for a while
// after CreateAccessKey returned it, and calling such a key broken would
// replace it with one just as new, and that one again, for as long as
// propagation takes. So a key IAM lists that is younger than the allowance
// is trusted; one older than the allowance that fails is not.
//
// S3 is asked first and IAM only when S3 refuses, so that the key of a
// settled organization costs one S3 request, as before, and no IAM call,
// whose API AWS throttles per account. The decision is the same as asking
// IAM first.
//
// While a key is within its allowance a wrong secret beside its id is not
// noticed; it is once the allowance has passed.
func (s *Service) AccessKeyUsable(ctx context.Context, user, id, secret, prefix string) (bool, error) {
	usable, _, err := s.keyUsable(ctx, user, id, secret, prefix)
	return usable, err
}

// keyUsable is AccessKeyUsable that also reports whether S3 honoured the
// key, rather than IAM's word that it is young.
func (s *Service) keyUsable(ctx context.Context, user, id, secret, prefix string) (usable, works bool, err error) {
	works, err = s.AccessKeyWorks(ctx, id, secret, prefix)
	if err != nil || works {
		return works, works, err
	}
	keys, err := s.AccessKeys(ctx, user)
	switch {
	case errors.Is(err, ErrNotFound):
		return false, false, nil
	case err != nil:
		return false, false, err
	}
	for _, k := range keys {
		if k.ID != id || k.Created.IsZero() {
			continue
		}
		if age := time.Since(k.Created); age < s.cfg.KeyPropagation {
			s.log.V(1).Info("Trusting a new access key that S3 does not honour yet", "user", user,
				"accessKeyId", id, "age", age.Round(time.Second).String(), "allowance", s.cfg.KeyPropagation.String())
			return true, false, nil
		}
	}
	return false, false, nil
}

// DeleteAccessKeys deletes every access key of user but those in keep and
// reports how many it deleted. A user that does not exist has none.
func (s *Service) DeleteAccessKeys(ctx context.Context, user string, keep ...string) (deleted int, err error) {
	ids, err := s.ListAccessKeys(ctx, user)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		if slices.Contains(keep, id) {
			continue
		}
		removed, err := s.remove(ctx, "DeleteAccessKey", func(ctx context.Context) error {
			_, err := s.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String(user), AccessKeyId: aws.String(id)})
			return err
		})
		if err != nil {
			return deleted, fmt.Errorf("deleting an access key of IAM user %q: %w", user, err)
		}
		if removed {
			deleted++
		}
	}
	if deleted > 0 {
		s.log.Info("Deleted access keys", "user", user, "count", deleted, "kept", len(ids)-deleted)
	}
	return deleted, nil
}

// DeletePrefixUser deletes user with its access keys and inline policies,
// and reports whether it deleted it; a user already gone is no error. A user
// outside orgforge's IAM path is ErrConflict and is not touched.
func (s *Service) DeletePrefixUser(ctx context.Context, user string) (deleted bool, err error) {
	if user == "" {
		return false, fmt.Errorf("%w: empty IAM user name", ErrInvalid)
	}
	got, err := s.getUser(ctx, user)
	switch {
	case err != nil || got == nil:
		return false, err
	case aws.ToString(got.Path) != s.cfg.IAMPath:
		return false, fmt.Errorf("%w: IAM user %q is outside orgforge's path %s; orgforge deletes only its own users",
			ErrConflict, user, s.cfg.IAMPath)
	}
	return s.deleteUser(ctx, user)
}

// DeleteOwnedPrefixUser is DeletePrefixUser for the user of the
// organization m only: a user of that name that is outside orgforge's IAM
// path, or carries another organization's UID tag or none, is ErrConflict
// and is not touched.
func (s *Service) DeleteOwnedPrefixUser(ctx context.Context, user string, m Marker) (deleted bool, err error) {
	if user == "" || m.UID == "" {
		return false, fmt.Errorf("%w: empty IAM user name or organization UID", ErrInvalid)
	}
	s.rest.forget(accessCheck(m.Org))
	got, err := s.getUser(ctx, user)
	if err != nil || got == nil {
		return false, err
	}
	if err := s.checkUser(got, m); err != nil {
		return false, err
	}
	return s.deleteUser(ctx, user)
}

// getUser reads user; a user that does not exist is nil, not an error.
func (s *Service) getUser(ctx context.Context, user string) (*iamtypes.User, error) {
	out, err := call(ctx, s, "GetUser", func(ctx context.Context) (*iam.GetUserOutput, error) {
		return s.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(user)})
	})
	switch {
	case isNoSuchEntity(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading IAM user %q: %w", user, err)
	}
	return out.User, nil
}

// deleteUser removes user's keys and inline policies, which IAM requires
// first, and then the user.
func (s *Service) deleteUser(ctx context.Context, user string) (bool, error) {
	if _, err := s.DeleteAccessKeys(ctx, user); err != nil {
		return false, err
	}
	policies, err := s.listUserPolicies(ctx, user)
	if err != nil {
		return false, err
	}
	for _, name := range policies {
		_, err := s.remove(ctx, "DeleteUserPolicy", func(ctx context.Context) error {
			_, err := s.iam.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: aws.String(user), PolicyName: aws.String(name)})
			return err
		})
		if err != nil {
			return false, fmt.Errorf("deleting policy %s of IAM user %q: %w", name, user, err)
		}
	}
	removed, err := s.remove(ctx, "DeleteUser", func(ctx context.Context) error {
		_, err := s.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: aws.String(user)})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("deleting IAM user %q: %w", user, err)
	}
	if removed {
		s.log.Info("Deleted IAM user", "user", user)
	}
	return removed, nil
}

// remove runs an IAM deletion through do and reports whether it removed
// the entity; one already gone is no error.
func (s *Service) remove(ctx context.Context, operation string, fn func(context.Context) error) (bool, error) {
	err := s.do(ctx, operation, fn)
	if isNoSuchEntity(err) {
		return false, nil
	}
	return err == nil, err
}

func (s *Service) listUserPolicies(ctx context.Context, user string) ([]string, error) {
	var names []string
	pages := iam.NewListUserPoliciesPaginator(s.iam, &iam.ListUserPoliciesInput{UserName: aws.String(user)})
	err := paginate(ctx, s, "ListUserPolicies", pages, func(page *iam.ListUserPoliciesOutput) bool {
		names = append(names, page.PolicyNames...)
		return true
	})
	switch {
	case isNoSuchEntity(err):
		return names, nil
	case err != nil:
		return nil, fmt.Errorf("listing policies of IAM user %q: %w", user, err)
	}
	return names, nil
}
