package controllers

import (
	"context"
	"time"

	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/storage"
)

// Database is what the reconciler needs of the Aurora service. Step tests
// may pass a fake; behaviour tests use the real service.
type Database interface {
	Endpoint() string
	InspectRole(ctx context.Context, name string) (aurora.RoleInfo, error)
	EnsureRole(ctx context.Context, spec aurora.RoleSpec) (aurora.Change, error)
	EnsureLogins(ctx context.Context, spec aurora.LoginsSpec) ([]aurora.LoginChange, error)
	EnsureDatabase(ctx context.Context, name, owner string, marker aurora.Marker) (aurora.Change, error)
	SecureDatabase(ctx context.Context, name, owner string) (aurora.Change, error)
	SecureDatabaseAccess(ctx context.Context, name, owner string) (aurora.Change, error)
	EnsureExtensions(ctx context.Context, db string, extensions []string) ([]string, error)
	CheckExtensions(ctx context.Context, extensions []string) error
	DropDatabase(ctx context.Context, name string, marker aurora.Marker) (bool, error)
	DropRole(ctx context.Context, name string, marker aurora.Marker) (bool, error)
	// FindOrganization reports whether the server holds a role or
	// database of that name marked as the organization's.
	FindOrganization(ctx context.Context, org, database, role string) (bool, error)
	// Usage reads the database's size and the sessions of the role and
	// its member logins.
	Usage(ctx context.Context, database, role string) (aurora.Usage, error)
	// MarkedFor lists the roles and databases marked for the
	// organization, whatever their UID; Remark marks them as another's.
	MarkedFor(ctx context.Context, org string) ([]aurora.Marked, error)
	Remark(ctx context.Context, objects []aurora.Marked, to aurora.Marker) error
	// AtRest reports whether a catalog snapshot no older than maxAge
	// shows the organization's objects as the Ensure calls leave them.
	AtRest(ctx context.Context, rest aurora.Rest, maxAge time.Duration) bool
	// PasswordWorks reports whether role logs in to database with
	// password.
	PasswordWorks(ctx context.Context, database, role, password string) (bool, error)
}

// Storage is what the reconciler needs of the S3 and IAM service.
type Storage interface {
	Bucket() string
	Region() string
	UserName(org string) string
	EnsurePrefix(ctx context.Context, prefix string, marker storage.Marker) (bool, error)
	// EnsurePrefixAtRest is EnsurePrefix for an organization at rest,
	// which reads the marker only when its check is due.
	EnsurePrefixAtRest(ctx context.Context, prefix string, marker storage.Marker) (bool, error)
	PrefixOwner(ctx context.Context, prefix string) (storage.Marker, bool, error)
	DeletePrefix(ctx context.Context, prefix string) (int, error)
	PrefixUsage(ctx context.Context, prefix string) (objects, bytes int64, err error)
	EnsureAccess(ctx context.Context, req storage.AccessRequest) (storage.Access, error)
	DeleteOwnedPrefixUser(ctx context.Context, user string, marker storage.Marker) (bool, error)
	// RemarkPrefix, PrefixUserOwner and RetagPrefixUser adopt a prefix
	// and an IAM user that an earlier organization of the name left.
	RemarkPrefix(ctx context.Context, prefix string, from, to storage.Marker) error
	PrefixUserOwner(ctx context.Context, org string) (storage.Marker, bool, error)
	RetagPrefixUser(ctx context.Context, from, to storage.Marker) error
}

// Credentials makes passwords and their SCRAM verifiers.
type Credentials interface {
	NewPassword() (string, error)
	Verifier(password string) (string, error)
}

// ClusterServices gives each DatabaseCluster's database service: the
// registry's Clusters, as the reconcilers use it.
type ClusterServices interface {
	// Ensure builds, or returns, the service of a cluster for cfg.
	Ensure(ctx context.Context, name string, cfg aurora.Config) (*aurora.Service, error)
	// Get returns the cluster's service, once Ensure has built it.
	Get(name string) (*aurora.Service, bool)
	// Remove closes the cluster's service.
	Remove(name string)
}
