// Copyright 2026 The orgforge Authors.
// SPDX-License-Identifier: Apache-2.0

package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FinalizerName is set on every Organization before the operator touches
// anything outside Kubernetes, so that deletion always runs the clean-up.
const FinalizerName = "tenancy.orgforge.io/finalizer"

// DeletionPolicy says what happens to an Organization's database, role and
// storage prefix when the Organization is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionPolicyRetain keeps the database, the role and the prefix's
	// objects; only the organization's S3 access key is revoked.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyDelete removes everything the operator created for the
	// organization.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// StorageAccess says how the organization's applications reach its prefix.
// +kubebuilder:validation:Enum=None;AccessKey
type StorageAccess string

const (
	// StorageAccessNone creates the prefix but no credentials for it.
	StorageAccessNone StorageAccess = "None"
	// StorageAccessAccessKey creates a per-organization IAM user whose access
	// key is limited to the organization's prefix.
	StorageAccessAccessKey StorageAccess = "AccessKey"
)

// AdoptionPolicy says whether an Organization takes over resources left by
// an earlier Organization of the same name.
// +kubebuilder:validation:Enum=Never;SameName
type AdoptionPolicy string

const (
	// AdoptionNever takes over nothing: a database, role, prefix or Secret
	// marked for another Organization UID is a Conflict.
	AdoptionNever AdoptionPolicy = "Never"
	// AdoptionSameName takes over the database, role, prefix and retained
	// Secret whose markers carry this Organization's name, whatever their
	// UID, when that Organization no longer exists in this Kubernetes
	// cluster, and re-marks them with this Organization's UID.
	AdoptionSameName AdoptionPolicy = "SameName"
)

// Condition types reported on an Organization.
const (
	// ConditionReady summarises DatabaseReady and StorageReady; it is True
	// only when both are.
	ConditionReady = "Ready"
	// ConditionDatabaseReady reports the database, its login role and the
	// database Secret.
	ConditionDatabaseReady = "DatabaseReady"
	// ConditionStorageReady reports the S3 prefix, its scoped access and the
	// storage Secret.
	ConditionStorageReady = "StorageReady"
)

// Condition types that follow kstatus (sigs.k8s.io/cli-utils/pkg/kstatus), so
// that Flux, kubectl and other kstatus readers tell work in progress from a
// failure that needs a person without a health check of their own. Both are
// abnormal-true: present, with status True, only while they apply, and
// removed otherwise, as kstatus recommends. An Organization that is Ready
// has neither.
const (
	// ConditionReconciling is True while the operator works towards the
	// current generation: before its first successful reconcile, while it
	// waits on something it expects to resolve by itself, and while it
	// retries a transient failure with backoff. Its reason and message are
	// Ready's. kstatus reports the Organization InProgress.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the operator cannot make progress on the
	// current generation until a person acts: its reason is InvalidSpec, OverBudget,
	// Conflict or InvalidSecret, and its message says what to change. status.observedGeneration
	// is the stalled generation, so kstatus reports the Organization Failed.
	ConditionStalled = "Stalled"
)

// Condition reasons reported on an Organization.
const (
	// ReasonProvisioned means everything the condition covers exists and works.
	ReasonProvisioned = "Provisioned"
	// ReasonProvisioning means the operator is still creating resources.
	ReasonProvisioning = "Provisioning"
	// ReasonConflict means a resource with the organization's name exists but
	// was not created by the operator for this Organization; nothing of it is
	// touched.
	ReasonConflict = "Conflict"
	// ReasonDatabaseUnavailable means PostgreSQL could not be reached or
	// refused the work; the operator retries with backoff.
	ReasonDatabaseUnavailable = "DatabaseUnavailable"
	// ReasonStorageUnavailable means S3 or IAM could not be reached or
	// refused the work; the operator retries with backoff.
	ReasonStorageUnavailable = "StorageUnavailable"
	// ReasonInvalidSpec means the spec passed admission but cannot be
	// provisioned, for example an extension the server does not offer.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonKubernetesError means the Kubernetes API server refused a
	// write or a read, for example a conflict on a Secret; the operator
	// retries with backoff. It is not an outage of PostgreSQL or S3.
	ReasonKubernetesError = "KubernetesError"
	// ReasonInvalidSecret means the database Secret was edited into
	// something the operator cannot use, such as an empty password; the
	// role keeps its password until the Secret is fixed.
	ReasonInvalidSecret = "InvalidSecret"
	// ReasonNoCapacity means no DatabaseCluster can take the organization:
	// none matches its clusterRef or clusterSelector, or those that do are
	// not Ready, are cordoned or are full. The message names each cluster
	// and why it was skipped. The organization is placed as soon as one
	// can take it.
	ReasonNoCapacity = "NoCapacity"
	// ReasonOverBudget means a raise of database.pool.maxConnections does
	// not fit the connection budget of the organization's DatabaseCluster;
	// the role and the Secret keep the limit in force until it does.
	ReasonOverBudget = "OverBudget"
	// ReasonDeleting means the Organization is being deleted.
	ReasonDeleting = "Deleting"
	// ReasonNotReady is the Ready reason while any other condition is not True.
	ReasonNotReady = "NotReady"
)

// Reasons of the Events recorded about an Organization, besides
// ReasonProvisioned (the changes that made it Ready) and the failure reasons
// above (one warning per new failure).
const (
	// EventReasonChanged lists what a reconcile changed, when the
	// Organization did not just become Ready.
	EventReasonChanged = "Changed"
	// EventReasonDeleted lists what the clean-up deleted.
	EventReasonDeleted = "Deleted"
	// EventReasonRetained lists what the clean-up kept (deletionPolicy
	// Retain) and what it revoked.
	EventReasonRetained = "Retained"
	// EventReasonRotated says that the Secrets switched to new credentials,
	// and later that the previous ones were revoked at the end of the
	// grace period.
	EventReasonRotated = "Rotated"
	// EventReasonAdopted lists what the Organization took over from an
	// earlier Organization of the same name, and that one's UID.
	EventReasonAdopted = "Adopted"
	// EventReasonDeleteFailed is the warning of a clean-up that waits on
	// something; it lists what was done so far.
	EventReasonDeleteFailed = "DeleteFailed"
)

// PoolSpec is the connection pool the organization's applications are told to
// use. MaxConnections is also the login role's CONNECTION LIMIT.
// +kubebuilder:validation:XValidation:rule="self.minConnections <= self.maxConnections",message="database.pool.minConnections must not be greater than database.pool.maxConnections"
type PoolSpec struct {
	// MinConnections is the number of connections a pool keeps open.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MinConnections int32 `json:"minConnections"`

	// MaxConnections is the most connections a pool opens, and the role's
	// connection limit on the server.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxConnections int32 `json:"maxConnections"`
}

// ExtensionName is the name of a PostgreSQL extension, for example pgcrypto
// or uuid-ossp.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^[a-z_][a-z0-9_-]*$`
type ExtensionName string

// ClusterReference names a DatabaseCluster.
type ClusterReference struct {
	// Name of the DatabaseCluster.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// DatabaseSpec describes the organization's PostgreSQL database.
type DatabaseSpec struct {
	// ClusterRef pins the organization to one DatabaseCluster. It is read
	// when the organization is first placed; an organization never moves.
	// +optional
	ClusterRef *ClusterReference `json:"clusterRef,omitempty"`

	// ClusterSelector limits placement to the DatabaseClusters whose labels
	// match. It is read when the organization is first placed.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`

	// Pool is the connection pool configuration written to the database Secret.
	// +kubebuilder:default={minConnections: 2, maxConnections: 10}
	// +optional
	Pool PoolSpec `json:"pool"`

	// Extensions are created in the organization's database.
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	// +optional
	Extensions []ExtensionName `json:"extensions,omitempty"`
}

// StorageSpec describes the organization's S3 prefix.
type StorageSpec struct {
	// Access says whether the operator issues an access key limited to the
	// organization's prefix.
	// +kubebuilder:default=AccessKey
	// +optional
	Access StorageAccess `json:"access"`
}

// CredentialsSpec says when the organization's database password and S3
// access key are rotated. A rotation gives applications a new credential
// while the old one keeps working for GracePeriod.
// +kubebuilder:validation:XValidation:rule="!has(self.rotateEvery) || duration(self.rotateEvery) > (has(self.gracePeriod) ? duration(self.gracePeriod) : duration('1h'))",message="credentials.rotateEvery must be longer than credentials.gracePeriod"
type CredentialsSpec struct {
	// RotateEvery rotates the credentials when this long has passed since
	// the last rotation (or since they were first issued). Unset, the
	// default, rotates only on a new RotationToken.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="credentials.rotateEvery must be at least 1m"
	// +optional
	RotateEvery *metav1.Duration `json:"rotateEvery,omitempty"`

	// RotationToken rotates the credentials once each time it is set to a
	// new value; any string will do, for example a date. Setting it for the
	// first time also rotates.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	RotationToken string `json:"rotationToken,omitempty"`

	// GracePeriod is how long the previous credential keeps working after
	// a rotation, so that applications can move to the new one.
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('720h')",message="credentials.gracePeriod must be between 10s and 720h"
	// +optional
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// DefaultGracePeriod is spec.credentials.gracePeriod's default.
const DefaultGracePeriod = time.Hour

// Grace returns the grace period, or its default when unset (as in an
// object built in Go and never sent to the API server).
func (c CredentialsSpec) Grace() time.Duration {
	if c.GracePeriod == nil {
		return DefaultGracePeriod
	}
	return c.GracePeriod.Duration
}

// OrganizationSpec is the desired state of an Organization.
type OrganizationSpec struct {
	// DisplayName is a human-readable name; it is not used to name anything.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	DisplayName string `json:"displayName,omitempty"`

	// Namespace is where the organization's Secrets are written. It defaults
	// to org-<name>, is created when missing and cannot be changed.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// DeletionPolicy says whether deleting the Organization deletes its
	// database, role and stored objects (Delete) or keeps them (Retain).
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy"`

	// Database configures the organization's database.
	// +kubebuilder:default={}
	// +optional
	Database DatabaseSpec `json:"database"`

	// Storage configures the organization's S3 prefix.
	// +kubebuilder:default={}
	// +optional
	Storage StorageSpec `json:"storage"`

	// Credentials configures the rotation of the database password and the
	// S3 access key.
	// +kubebuilder:default={}
	// +optional
	Credentials CredentialsSpec `json:"credentials"`

	// Adoption says whether the Organization takes over a database, role,
	// prefix and Secret left by an earlier Organization of the same name,
	// for example one deleted with deletionPolicy Retain, or one lost with
	// its Kubernetes cluster.
	// +kubebuilder:default=Never
	// +optional
	Adoption AdoptionPolicy `json:"adoption,omitempty"`
}

// DatabaseStatus tells applications where the organization's database is.
type DatabaseStatus struct {
	// Cluster is the DatabaseCluster the organization is placed on.
	// +optional
	Cluster string `json:"cluster,omitempty"`
	// Name is the database's name on the server.
	// +optional
	Name string `json:"name,omitempty"`
	// Host is the tenant-facing database host.
	// +optional
	Host string `json:"host,omitempty"`
	// Port is the tenant-facing database port.
	// +optional
	Port int32 `json:"port,omitempty"`
	// Role is the login role that owns the database.
	// +optional
	Role string `json:"role,omitempty"`
	// SecretName is the Secret, in the organization's namespace, holding the
	// login and the pool configuration.
	// +optional
	SecretName string `json:"secretName,omitempty"`
}

// StorageStatus tells applications where the organization's objects live.
type StorageStatus struct {
	// Bucket is the tenants bucket.
	// +optional
	Bucket string `json:"bucket,omitempty"`
	// Prefix is the organization's key prefix inside the bucket.
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// URL is s3://bucket/prefix.
	// +optional
	URL string `json:"url,omitempty"`
	// SecretName is the Secret, in the organization's namespace, holding the
	// bucket, prefix and, with AccessKey, the scoped credentials.
	// +optional
	SecretName string `json:"secretName,omitempty"`
}

// CredentialsStatus reports the rotation of the organization's credentials.
type CredentialsStatus struct {
	// DatabaseLogin is the login role whose password the database Secret
	// holds now.
	// +optional
	DatabaseLogin string `json:"databaseLogin,omitempty"`
	// AccessKeyID is the S3 access key the storage Secret holds now.
	// +optional
	AccessKeyID string `json:"accessKeyID,omitempty"`
	// LastRotation is when the Secrets last switched to new credentials.
	// +optional
	LastRotation *metav1.Time `json:"lastRotation,omitempty"`
	// NextRotation is when spec.credentials.rotateEvery next rotates them.
	// +optional
	NextRotation *metav1.Time `json:"nextRotation,omitempty"`
	// PreviousValidUntil is when the previous credentials stop working; it
	// is unset outside a grace period.
	// +optional
	PreviousValidUntil *metav1.Time `json:"previousValidUntil,omitempty"`
	// RotationToken is the last spec.credentials.rotationToken acted on.
	// +optional
	RotationToken string `json:"rotationToken,omitempty"`
}

// AdoptionStatus records what the Organization took over from an earlier
// Organization of the same name.
type AdoptionStatus struct {
	// FromUID is the UID of the Organization the resources were marked for.
	FromUID string `json:"fromUID"`
	// Resources lists what was adopted, for example "database org_acme".
	// +optional
	Resources []string `json:"resources,omitempty"`
	// Time is when the adoption happened.
	Time metav1.Time `json:"time"`
}

// UsageStatus is what the organization uses, refreshed every --usage-period.
type UsageStatus struct {
	// DatabaseBytes is pg_database_size of the organization's database.
	// +optional
	DatabaseBytes *int64 `json:"databaseBytes,omitempty"`
	// StorageObjects is the number of objects under the prefix.
	// +optional
	StorageObjects *int64 `json:"storageObjects,omitempty"`
	// StorageBytes is the total size of the objects under the prefix.
	// +optional
	StorageBytes *int64 `json:"storageBytes,omitempty"`
	// Connections is the number of sessions open to the database by the
	// organization's logins.
	// +optional
	Connections *int32 `json:"connections,omitempty"`
	// ConnectionLimit is the limit those sessions count against.
	// +optional
	ConnectionLimit int32 `json:"connectionLimit,omitempty"`
	// UpdatedAt is when the figures were read.
	// +optional
	UpdatedAt *metav1.Time `json:"updatedAt,omitempty"`
}

// OrganizationStatus is the observed state of an Organization.
type OrganizationStatus struct {
	// ObservedGeneration is the last generation the operator finished with:
	// reconciled successfully (Ready), or found to need a person (Stalled).
	// It is 0 until then, so that kstatus readers see an Organization the
	// operator has not yet acted on as in progress, not as current.
	// +kubebuilder:default=0
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Namespace is the namespace the organization's Secrets are written to.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Conditions are Ready, DatabaseReady and StorageReady, always; and
	// Reconciling or Stalled while they apply.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Database locates the organization's database.
	// +optional
	Database DatabaseStatus `json:"database,omitempty"`

	// Storage locates the organization's S3 prefix.
	// +optional
	Storage StorageStatus `json:"storage,omitempty"`

	// Credentials reports credential rotation.
	// +optional
	Credentials CredentialsStatus `json:"credentials,omitempty"`

	// Adoption records what was taken over from an earlier Organization of
	// the same name, if anything.
	// +optional
	Adoption *AdoptionStatus `json:"adoption,omitempty"`

	// Usage is what the organization uses.
	// +optional
	Usage *UsageStatus `json:"usage,omitempty"`
}

// Organization is a tenant: its own PostgreSQL database and login, and its own
// S3 prefix with access limited to it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=org,categories=orgforge
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.status.database.cluster`
// +kubebuilder:printcolumn:name="Database",type=string,JSONPath=`.status.database.name`
// +kubebuilder:printcolumn:name="Prefix",type=string,JSONPath=`.status.storage.url`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 50",message="metadata.name must be at most 50 characters so that the database name org_<name> fits PostgreSQL's 63-byte limit",fieldPath=".metadata"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit, and no dots",fieldPath=".metadata"
// +kubebuilder:validation:XValidation:rule="(has(self.spec.__namespace__) ? self.spec.__namespace__ : 'org-' + self.metadata.name) == (has(oldSelf.spec.__namespace__) ? oldSelf.spec.__namespace__ : 'org-' + oldSelf.metadata.name)",message="spec.namespace is immutable",fieldPath=".spec.namespace"
type Organization struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +kubebuilder:default={}
	// +optional
	Spec OrganizationSpec `json:"spec"`
	// Status is the observed state, written by the operator. Its default
	// gives an Organization that the operator has not yet written to a
	// status.observedGeneration of 0.
	// +kubebuilder:default={}
	// +optional
	Status OrganizationStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// OrganizationList is a list of Organizations.
type OrganizationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Organization `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Organization{}, &OrganizationList{})
}
