// Copyright 2026 The orgforge Authors.
// SPDX-License-Identifier: Apache-2.0

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterFinalizerName holds a DatabaseCluster while organizations are
// placed on it: their databases live there.
const ClusterFinalizerName = "tenancy.orgforge.io/cluster-finalizer"

// DefaultClusterName is the DatabaseCluster the operator makes for the
// server its --database-* flags describe, so that the fleet view is always
// complete and organizations provisioned before the fleet stay where they
// are.
const DefaultClusterName = "default"

// AnnotationCluster, on an Organization, is the DatabaseCluster it is placed
// on. The operator writes it before the database is created; with
// status.database.cluster and the database's ownership marker it is one of
// the three records of the placement.
const AnnotationCluster = "tenancy.orgforge.io/cluster"

// AnnotationBudgetedConnections, on an Organization, is the pool
// maxConnections its cluster's connection budget counts for it: the limit in
// force, which a raise that does not fit leaves unchanged.
const AnnotationBudgetedConnections = "tenancy.orgforge.io/budgeted-connections"

// SecretReference names a Secret in a namespace.
type SecretReference struct {
	// Namespace of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// AdminSpec says how the operator reaches a cluster as its admin login:
// NOSUPERUSER, CREATEDB, CREATEROLE and a member of rds_superuser.
// +kubebuilder:validation:XValidation:rule="[has(self.fromFlags) && self.fromFlags, has(self.dsnSecretRef), has(self.host)].filter(x, x).size() == 1",message="set exactly one of admin.fromFlags, admin.dsnSecretRef and admin.host"
// +kubebuilder:validation:XValidation:rule="has(self.host) == has(self.credentialsSecretRef)",message="admin.host and admin.credentialsSecretRef go together"
type AdminSpec struct {
	// FromFlags says the admin connection is the operator's --database-*
	// flags. The operator sets it on the DatabaseCluster it makes for them.
	// +optional
	FromFlags bool `json:"fromFlags,omitempty"`

	// DSNSecretRef is a Secret whose key "dsn" holds the admin connection
	// string.
	// +optional
	DSNSecretRef *SecretReference `json:"dsnSecretRef,omitempty"`

	// Host is the admin endpoint's host: the cluster's writer endpoint.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Host string `json:"host,omitempty"`
	// Port is the admin endpoint's port.
	// +kubebuilder:default=5432
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
	// Database is the database the admin connects to.
	// +kubebuilder:default=postgres
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Database string `json:"database,omitempty"`
	// SSLMode is the admin connection's sslmode.
	// +kubebuilder:default=require
	// +kubebuilder:validation:Enum=disable;allow;prefer;require;verify-ca;verify-full
	// +optional
	SSLMode string `json:"sslMode,omitempty"`
	// CredentialsSecretRef is a Secret whose keys "username" and "password"
	// are the admin login.
	// +optional
	CredentialsSecretRef *SecretReference `json:"credentialsSecretRef,omitempty"`
}

// TenantEndpointSpec is what tenants' database Secrets say about where the
// cluster is. Fields left empty take the admin endpoint's values.
type TenantEndpointSpec struct {
	// Host is the tenant-facing host, for example an RDS Proxy or the
	// cluster's writer endpoint.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Host string `json:"host,omitempty"`
	// Port is the tenant-facing port.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
	// SSLMode is written to tenants' Secrets.
	// +kubebuilder:validation:Enum="";disable;allow;prefer;require;verify-ca;verify-full
	// +optional
	SSLMode string `json:"sslMode,omitempty"`
}

// ClusterCapacity is what placement may put on a cluster.
type ClusterCapacity struct {
	// MaxDatabases caps the organizations placed on the cluster; unset or 0
	// means no cap, the connection budget alone bounding it.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxDatabases int32 `json:"maxDatabases,omitempty"`
	// MaxConnections is the budget for the sum of the placed
	// organizations' pool maxConnections. Unset, it is the server's
	// max_connections less superuser_reserved_connections,
	// reserved_connections, the operator's own connections and a headroom
	// of 10% (at least 10) for people, monitoring and failover overlap.
	// status.connections.capacity shows the budget in force.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxConnections *int32 `json:"maxConnections,omitempty"`
}

// DatabaseClusterSpec is the desired state of a DatabaseCluster.
type DatabaseClusterSpec struct {
	// Admin is how the operator reaches the cluster.
	Admin AdminSpec `json:"admin"`

	// Tenant is what tenants' database Secrets say about the cluster.
	// +kubebuilder:default={}
	// +optional
	Tenant TenantEndpointSpec `json:"tenant"`

	// Capacity bounds what placement puts on the cluster.
	// +kubebuilder:default={}
	// +optional
	Capacity ClusterCapacity `json:"capacity"`

	// Schedulable false cordons the cluster: no new organization is placed
	// on it, and those on it stay and are served.
	// +kubebuilder:default=true
	// +optional
	Schedulable *bool `json:"schedulable,omitempty"`
}

// IsSchedulable reports whether new organizations may be placed on the
// cluster: true unless spec.schedulable is false.
func (s *DatabaseClusterSpec) IsSchedulable() bool {
	return s.Schedulable == nil || *s.Schedulable
}

// ConnectionBudget is a cluster's connection budget and what is given out.
type ConnectionBudget struct {
	// Budgeted is the sum of the placed organizations' pool maxConnections.
	// +optional
	Budgeted int32 `json:"budgeted"`
	// Capacity is the budget in force: spec.capacity.maxConnections, or
	// its default from the server.
	// +optional
	Capacity int32 `json:"capacity"`
}

// DatabaseClusterStatus is the observed state of a DatabaseCluster.
type DatabaseClusterStatus struct {
	// ObservedGeneration is the last generation the operator acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions are Ready, and Reconciling or Stalled while they apply.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ServerVersion is the PostgreSQL server's version, for example 17.5.
	// +optional
	ServerVersion string `json:"serverVersion,omitempty"`

	// Organizations is how many organizations are placed on the cluster.
	// +optional
	Organizations int32 `json:"organizations"`

	// Databases is how many organizations' databases the cluster's server
	// holds, counted by their ownership markers.
	// +optional
	Databases int32 `json:"databases"`

	// Connections is the connection budget and what is given out of it.
	// +optional
	Connections ConnectionBudget `json:"connections"`

	// ConnectionBudget is connections.budgeted/connections.capacity, for
	// kubectl get.
	// +optional
	ConnectionBudget string `json:"connectionBudget,omitempty"`

	// LastHealthCheck is when the operator last checked the server, and
	// the Ready condition says what it found. A check that changes nothing
	// else in the status writes it at most once per resync period, so it
	// may lag the last check by that much.
	// +optional
	LastHealthCheck *metav1.Time `json:"lastHealthCheck,omitempty"`
}

// Condition reasons reported on a DatabaseCluster, besides the Organization
// reasons they share (InvalidSpec, Deleting).
const (
	// ReasonConnected means the operator reached the server as its admin
	// and the last health check passed.
	ReasonConnected = "Connected"
	// ReasonUnreachable means the server could not be reached or refused
	// the admin; the organizations on it are not served until it is back.
	ReasonUnreachable = "Unreachable"
	// ReasonInUse means the DatabaseCluster is being deleted but
	// organizations are still placed on it; its finalizer holds it.
	ReasonInUse = "InUse"
)

// DatabaseCluster is one PostgreSQL (Aurora) cluster that organizations'
// databases are placed on. The operator reaches it as an admin, checks its
// health, and places each new organization on the Ready, schedulable
// cluster with the most connection budget left.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=dbc,categories=orgforge
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.serverVersion`
// +kubebuilder:printcolumn:name="Orgs",type=integer,JSONPath=`.status.organizations`
// +kubebuilder:printcolumn:name="Connections",type=string,JSONPath=`.status.connectionBudget`
// +kubebuilder:printcolumn:name="Schedulable",type=boolean,JSONPath=`.spec.schedulable`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DatabaseCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec DatabaseClusterSpec `json:"spec"`
	// +optional
	Status DatabaseClusterStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// DatabaseClusterList is a list of DatabaseClusters.
type DatabaseClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DatabaseCluster `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DatabaseCluster{}, &DatabaseClusterList{})
}
