package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/config"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/storage"
)

// Labels and annotations the operator puts on what it creates.
const (
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	ManagedByValue    = "orgforge"
	LabelOrganization = "tenancy.orgforge.io/organization"
	// AnnotationPasswordVerifier, on the database Secret, is the
	// SCRAM-SHA-256 verifier of the password the operator last set on the
	// role: the salted, iterated form PostgreSQL itself stores, not the
	// password. A Secret whose password no longer matches it was edited,
	// and the role is given the Secret's password. It sits on the Secret,
	// not on the Organization's status, which more people may read.
	AnnotationPasswordVerifier = "tenancy.orgforge.io/password-verifier"
)

// scope is one reconcile's view of an Organization: the names derived from
// it, and what each phase found for the phases after it.
type scope struct {
	org *tenancyv1alpha1.Organization
	// clusterID is this Kubernetes cluster's identity, which the markers
	// record (Settings.ClusterID).
	clusterID string
	namespace string
	database  string
	role      string
	prefix    string
	outcome   outcome
	// cluster is the DatabaseCluster the organization is placed on; dbs
	// is its database service and tenant what its Secrets say of it.
	cluster string
	dbs     Database
	tenant  TenantEndpoint
	// maxConnections is the pool limit in force: the spec's, unless a
	// raise did not fit the cluster's budget.
	maxConnections int32
	// budgetLogins is how many logins of maxConnections each the
	// organization's budget covers (AnnotationBudgetedLogins).
	budgetLogins int
	// placedNow is set when this reconcile placed the organization.
	placedNow bool
	// freshNamespace is set when this reconcile created the namespace, so
	// that no Secret can exist in it yet.
	freshNamespace bool
	// What each part changed, reported in one Event at the end. The
	// database and storage parts run at once, so each has its own list,
	// and its own state below.
	nsNotes, dbNotes, stNotes notes
	db                        databaseState
	st                        storageState
	// adopted is what the reconcile took over from earlier
	// Organizations of the same name.
	adopted adoption
}

// databaseState is what the database phases pass on to each other.
type databaseState struct {
	// secret is the database Secret as found, or nil.
	secret *corev1.Secret
	// password is the one the Secret holds, then the one the role has.
	password string
	// edited is set when the Secret's password is not the one the
	// operator last set: a person rotated it.
	edited bool
	// verifier is set when the role is given a password here; it then
	// becomes the Secret's AnnotationPasswordVerifier.
	verifier string
	// changed is set when the database was created or updated here.
	changed bool
	// adoption, set when a retained Secret is taken over, is what its
	// AnnotationAdoption says; the Secret is then made the Organization's.
	adoption string
	// current is the login the Secret holds: the owner role, until the
	// first rotation, then one of naming.LoginNames. password is its.
	current string
	// previous is the login the Secret holds under previous-username
	// during a grace period, with its password; empty otherwise.
	previous, previousPassword string
	// revoked is the previous login whose grace period ended here.
	revoked string
	// markedLogins is set when adoption finds login roles marked for the
	// organization's name: an earlier Organization rotated, and its logins
	// must be brought to what the Secret holds, whatever this one's spec.
	markedLogins bool
	// switched is set when this reconcile rotates to a new login.
	switched bool
	// atRest is set when the cluster's catalog snapshot shows the
	// settled organization's objects as the steps would leave them.
	atRest bool
	// rot is the Secret's rotation as it is to be written; nil until the
	// Secret is read.
	rot *rotation
	// waiting says why a due rotation waits, for the condition.
	waiting string
	wake    wake
}

// storageState is what the storage phases pass on to each other.
type storageState struct {
	// secret is the storage Secret as found, or nil.
	secret *corev1.Secret
	// data is the storage Secret's data to write.
	data map[string][]byte
	// rot is the Secret's rotation as it is to be written; nil until the
	// Secret is read.
	rot  *rotation
	wake wake
	// current, previous and pending are the Secret's keys, previous only
	// during a grace period; then the keys EnsureAccess returned.
	current, previous, pending storage.AccessKey
	// rotate asks EnsureAccess to rotate; switched is set when it did.
	rotate, switched bool
	// revoked is the previous key whose grace period ended here.
	revoked string
}

// notes collects what a part of a reconcile changed outside Kubernetes or
// in its Secrets, for the one Event that reports all of it.
type notes []string

func (n *notes) add(format string, args ...any) { *n = append(*n, fmt.Sprintf(format, args...)) }

// change notes a real change and nothing for a no-op.
func (n *notes) change(c aurora.Change, what string) {
	switch c {
	case aurora.Created:
		n.add("created %s", what)
	case aurora.Updated:
		n.add("updated %s to match the spec", what)
	}
}

func newScope(org *tenancyv1alpha1.Organization) *scope {
	ns := org.Spec.Namespace
	if ns == "" {
		ns = naming.Namespace(org.Name)
	}
	return &scope{
		org:       org,
		namespace: ns,
		database:  naming.DatabaseName(org.Name),
		role:      naming.RoleName(org.Name),
		// Until placement says otherwise, the spec's limit is the one
		// in force.
		maxConnections: org.Spec.Database.Pool.MaxConnections,
		budgetLogins:   budgetedLogins(org),
	}
}

func (s *scope) dbMarker() aurora.Marker {
	return aurora.Marker{Org: s.org.Name, UID: string(s.org.UID), Cluster: s.clusterID}
}

func (s *scope) storageMarker() storage.Marker {
	return storage.Marker{Org: s.org.Name, UID: string(s.org.UID), Cluster: s.clusterID}
}

func (s *scope) labels() map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue, LabelOrganization: s.org.Name}
}

// extensions lists the spec's extensions by name.
func (s *scope) extensions() []string {
	exts := make([]string, len(s.org.Spec.Database.Extensions))
	for i, e := range s.org.Spec.Database.Extensions {
		exts[i] = string(e)
	}
	return exts
}

// validate refuses, before anything is created, a spec that passed
// admission but cannot be provisioned. Every error it returns is one of an
// invalid spec.
func (r *OrganizationReconciler) validate(s *scope) error {
	if err := naming.ValidateOrgName(s.org.Name); err != nil {
		return err
	}
	if config.SystemNamespaces[s.namespace] && !r.Settings.AllowSystemNamespaces {
		return fmt.Errorf("spec.namespace %q is a system namespace; choose another, or start the operator with --allow-system-namespaces", s.namespace)
	}
	p, err := naming.Prefix(r.Settings.PrefixTemplate, s.org.Name)
	if err != nil {
		return err
	}
	s.prefix = p
	return nil
}

// checkExtensions refuses, before the role and database are created,
// extensions the organization's server does not offer or offers to
// superusers only.
func (r *OrganizationReconciler) checkExtensions(ctx context.Context, s *scope) error {
	return s.dbs.CheckExtensions(ctx, s.extensions())
}
