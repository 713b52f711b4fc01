package controllers

import (
	"context"
	"errors"
	"fmt"

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
// it and what each step found.
type scope struct {
	org       *tenancyv1alpha1.Organization
	settings  Settings
	namespace string
	database  string
	role      string
	prefix    string
	outcome   outcome
	// freshNamespace is set when this reconcile created the namespace, so
	// that no Secret can exist in it yet.
	freshNamespace bool
	// What each part changed, reported in one Event at the end. The
	// database and storage parts run at once, so each has its own list.
	nsNotes, dbNotes, stNotes notes
}

// notes collects what a part of a reconcile changed outside Kubernetes or
// in its Secrets, for the one Event that reports all of it.
type notes []string

func (n *notes) add(format string, args ...any) { *n = append(*n, fmt.Sprintf(format, args...)) }

func newScope(org *tenancyv1alpha1.Organization, settings Settings) *scope {
	ns := org.Spec.Namespace
	if ns == "" {
		ns = naming.Namespace(org.Name)
	}
	return &scope{
		org:       org,
		settings:  settings,
		namespace: ns,
		database:  naming.DatabaseName(org.Name),
		role:      naming.RoleName(org.Name),
	}
}

func (s *scope) dbMarker() aurora.Marker {
	return aurora.Marker{Org: s.org.Name, UID: string(s.org.UID)}
}

func (s *scope) storageMarker() storage.Marker {
	return storage.Marker{Org: s.org.Name, UID: string(s.org.UID)}
}

func (s *scope) labels() map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue, LabelOrganization: s.org.Name}
}

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

// checkExtensions refuses, before anything is created, extensions the
// server does not offer or offers to superusers only. When the server
// cannot be asked, the database step reports why and storage goes on.
func (r *OrganizationReconciler) checkExtensions(ctx context.Context, s *scope) error {
	exts := make([]string, len(s.org.Spec.Database.Extensions))
	for i, e := range s.org.Spec.Database.Extensions {
		exts[i] = string(e)
	}
	if err := r.Database.CheckExtensions(ctx, exts); errors.Is(err, aurora.ErrInvalid) {
		return err
	}
	return nil
}

// change notes a real change and nothing for a no-op.
func (n *notes) change(c aurora.Change, what string) {
	switch c {
	case aurora.Created:
		n.add("created %s", what)
	case aurora.Updated:
		n.add("updated %s to match the spec", what)
	}
}
