package testutil

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// OrgOption changes an Organization that NewOrg builds.
type OrgOption func(*tenancyv1alpha1.Organization)

// NewOrg returns an Organization as a user would apply it with deletion
// policy Delete, the API server's defaults spelled out, and then opts
// applied in order.
func NewOrg(name string, opts ...OrgOption) *tenancyv1alpha1.Organization {
	o := &tenancyv1alpha1.Organization{}
	o.Name = name
	o.Spec.DeletionPolicy = tenancyv1alpha1.DeletionPolicyDelete
	o.Spec.Database.Pool = tenancyv1alpha1.PoolSpec{MinConnections: 2, MaxConnections: 10}
	o.Spec.Storage.Access = tenancyv1alpha1.StorageAccessAccessKey
	o.Spec.Credentials.GracePeriod = &metav1.Duration{Duration: tenancyv1alpha1.DefaultGracePeriod}
	o.Spec.Adoption = tenancyv1alpha1.AdoptionNever
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithPool sets the connection pool.
func WithPool(minConns, maxConns int32) OrgOption {
	return func(o *tenancyv1alpha1.Organization) {
		o.Spec.Database.Pool = tenancyv1alpha1.PoolSpec{MinConnections: minConns, MaxConnections: maxConns}
	}
}

// InNamespace sets spec.namespace.
func InNamespace(ns string) OrgOption {
	return func(o *tenancyv1alpha1.Organization) { o.Spec.Namespace = ns }
}

// WithExtensions adds PostgreSQL extensions.
func WithExtensions(names ...string) OrgOption {
	return func(o *tenancyv1alpha1.Organization) {
		for _, n := range names {
			o.Spec.Database.Extensions = append(o.Spec.Database.Extensions, tenancyv1alpha1.ExtensionName(n))
		}
	}
}

// WithDisplayName sets spec.displayName.
func WithDisplayName(s string) OrgOption {
	return func(o *tenancyv1alpha1.Organization) { o.Spec.DisplayName = s }
}

// WithDeletionPolicy sets spec.deletionPolicy.
func WithDeletionPolicy(p tenancyv1alpha1.DeletionPolicy) OrgOption {
	return func(o *tenancyv1alpha1.Organization) { o.Spec.DeletionPolicy = p }
}

// WithLabel adds a label.
func WithLabel(key, value string) OrgOption {
	return func(o *tenancyv1alpha1.Organization) {
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		o.Labels[key] = value
	}
}

// UnstructuredOrg is an Organization as any client may write it, with
// fields of any type, so that the API server's validation can be fed what
// the Go types cannot hold. spec may be nil.
func UnstructuredOrg(name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": tenancyv1alpha1.GroupVersion.String(),
		"kind":       "Organization",
		"metadata":   map[string]any{"name": name},
	}}
	if spec != nil {
		u.Object["spec"] = spec
	}
	return u
}

// PoolSpec is an unstructured spec with the pool's bounds.
func PoolSpec(minConns, maxConns any) map[string]any {
	return map[string]any{"database": map[string]any{"pool": map[string]any{"minConnections": minConns, "maxConnections": maxConns}}}
}

// ExtensionsSpec is an unstructured spec with the extensions.
func ExtensionsSpec(names ...any) map[string]any {
	return map[string]any{"database": map[string]any{"extensions": names}}
}

// ReadyAtGeneration reports whether o is Ready for its current generation,
// as kstatus and kubectl wait see it: the Ready condition True and both it
// and the status observed at o's generation.
func ReadyAtGeneration(o *tenancyv1alpha1.Organization) bool {
	c := meta.FindStatusCondition(o.Status.Conditions, tenancyv1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == o.Generation &&
		o.Status.ObservedGeneration == o.Generation
}

// DescribeCondition describes o's condition of type t for a failure message, as
// "Status/Reason: Message", or "none".
func DescribeCondition(o *tenancyv1alpha1.Organization, t string) string {
	c := meta.FindStatusCondition(o.Status.Conditions, t)
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
}

// ConditionOf is o's condition of type t, found with
// meta.FindStatusCondition, or the zero Condition when o has none.
func ConditionOf(o *tenancyv1alpha1.Organization, t string) metav1.Condition {
	if c := meta.FindStatusCondition(o.Status.Conditions, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// OnCluster pins the organization to a DatabaseCluster
// (spec.database.clusterRef).
func OnCluster(name string) OrgOption {
	return func(o *tenancyv1alpha1.Organization) {
		o.Spec.Database.ClusterRef = &tenancyv1alpha1.ClusterReference{Name: name}
	}
}

// OnClustersLabelled limits placement to the DatabaseClusters with these
// labels (spec.database.clusterSelector).
func OnClustersLabelled(labels map[string]string) OrgOption {
	return func(o *tenancyv1alpha1.Organization) {
		o.Spec.Database.ClusterSelector = &metav1.LabelSelector{MatchLabels: labels}
	}
}

// WithStorageAccess sets spec.storage.access.
func WithStorageAccess(a tenancyv1alpha1.StorageAccess) OrgOption {
	return func(o *tenancyv1alpha1.Organization) { o.Spec.Storage.Access = a }
}

// WithAdoption sets spec.adoption.
func WithAdoption(a tenancyv1alpha1.AdoptionPolicy) OrgOption {
	return func(o *tenancyv1alpha1.Organization) { o.Spec.Adoption = a }
}
