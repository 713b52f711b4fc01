package storage

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// A permissions boundary caps what an IAM user may do whatever its own
// policies say. With one configured, the operator's IAM policy can require
// it on every call that gives a user permissions (docs/install-aws.md), so
// that whoever holds the operator's role still cannot mint an administrator.

// permissionsBoundary is the boundary to create users with, nil for none.
func (s *Service) permissionsBoundary() *string {
	if s.cfg.PermissionsBoundary == "" {
		return nil
	}
	return aws.String(s.cfg.PermissionsBoundary)
}

// boundaryOf is the ARN of u's permissions boundary, "" for none.
func boundaryOf(u *iamtypes.User) string {
	if u.PermissionsBoundary == nil {
		return ""
	}
	return aws.ToString(u.PermissionsBoundary.PermissionsBoundaryArn)
}

// needsBoundary reports whether u must be given the boundary want: one is
// wanted and u has none, or another. With none wanted a user's boundary is
// left as it is: removing one is what the operator's IAM policy denies.
func needsBoundary(u *iamtypes.User, want string) bool {
	return want != "" && boundaryOf(u) != want
}

// ensureBoundary gives u, an existing user of ours, the configured
// permissions boundary unless it has it already, and reports whether it
// wrote. It runs before the user's policy is written: the operator's IAM
// policy only lets it write the policy of a user under the boundary.
func (s *Service) ensureBoundary(ctx context.Context, u *iamtypes.User) (changed bool, err error) {
	want := s.cfg.PermissionsBoundary
	if !needsBoundary(u, want) {
		return false, nil
	}
	user := aws.ToString(u.UserName)
	err = s.do(ctx, "PutUserPermissionsBoundary", func(ctx context.Context) error {
		_, err := s.iam.PutUserPermissionsBoundary(ctx, &iam.PutUserPermissionsBoundaryInput{
			UserName:            aws.String(user),
			PermissionsBoundary: aws.String(want),
		})
		return err
	})
	switch {
	case errorCode(err) == "InvalidAction":
		// S3-compatible IAM servers such as versitygw have no boundaries.
		return false, fmt.Errorf("setting the permissions boundary of IAM user %q: the IAM service at %s does not support permissions boundaries; configure none for it (--iam-permissions-boundary): %w",
			user, s.iamEndpoint(), err)
	case err != nil:
		return false, fmt.Errorf("setting the permissions boundary of IAM user %q to %s: %w", user, want, err)
	}
	s.log.Info("Set IAM user permissions boundary", "user", user, "boundary", want, "previous", boundaryOf(u))
	return true, nil
}
