package controllers

import (
	"crypto/sha256"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// The manager's cache holds every Organization and two Secrets for each,
// for as long as the operator runs: what it keeps of them is most of the
// operator's memory per organization (docs/scaling.md, "Memory"). The
// transforms below keep what the reconciler reads, and no more.

// secretDigestKey holds, in a cached Secret's data, a digest of the keys
// the cache drops (secretKeysDropped). No Secret the API server returns has
// it, as '/' may not appear in a data key; and none is ever written with
// it, as the operator's writes replace a Secret's data whole, with what it
// computes.
const secretDigestKey = "orgforge/dropped-keys-digest"

// secretKeysDropped are the keys of the operator's Secrets that the
// reconciler writes but never reads: derived from the spec, the
// DatabaseCluster and the flags, or from the keys it keeps (the uri holds
// the password). The cache keeps a digest of them in their place, which
// is enough to tell whether they are what the operator would write. A key
// the reconciler reads must not be listed here.
var secretKeysDropped = []string{
	// The database Secret (databaseSecretData).
	"host", "port", "dbname", "sslmode", "uri", "jdbc-url", "pool-min-size", "pool-max-size",
	// The storage Secret.
	"bucket", "prefix", "region", "endpoint",
}

// compactSecretData is data as the cache keeps it: the keys the reconciler
// reads, and the digest of the others in place of them. It is the same for
// a Secret read from the cache and for the same one read from the API
// server, and for the data the operator would write: compare these to
// tell whether a Secret is as it should be. Data already compacted is
// returned as it is.
func compactSecretData(data map[string][]byte) map[string][]byte {
	if _, ok := data[secretDigestKey]; ok {
		return data
	}
	h := sha256.New()
	dropped := 0
	for _, k := range secretKeysDropped {
		v, ok := data[k]
		if !ok {
			continue
		}
		dropped++
		// Lengths first, so that no two different sets of values run
		// together into the same bytes.
		h.Write([]byte{byte(len(k)), byte(len(v) >> 24), byte(len(v) >> 16), byte(len(v) >> 8), byte(len(v))})
		h.Write([]byte(k))
		h.Write(v)
	}
	// Sized for what it keeps: a map made for all of data's keys would
	// hold twice the slots the database Secret's few kept keys need.
	kept := len(data) - dropped
	if dropped > 0 {
		kept++
	}
	out := make(map[string][]byte, kept)
	for k, v := range data {
		if !slices.Contains(secretKeysDropped, k) {
			out[intern(k)] = v
		}
	}
	if dropped > 0 {
		out[secretDigestKey] = h.Sum(nil)
	}
	return out
}

// TransformSecret is the cache's transform for the operator's Secrets: the
// object without its managed fields, with its data compacted
// (compactSecretData), and its well-known strings shared.
func TransformSecret(obj any) (any, error) {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	secret.ManagedFields = nil
	secret.Data = compactSecretData(secret.Data)
	internMeta(&secret.ObjectMeta)
	return secret, nil
}

// TransformOrganization is the cache's transform for Organizations: the
// object without its managed fields or kubectl's last-applied copy of
// itself, which nothing reads and which can be as large as the rest, and
// with its well-known strings shared. Nothing is dropped from the status:
// the status patch compares with the cached Organization, and would write
// back what was missing from it.
func TransformOrganization(obj any) (any, error) {
	org, ok := obj.(*tenancyv1alpha1.Organization)
	if !ok {
		return obj, nil
	}
	org.ManagedFields = nil
	delete(org.Annotations, corev1.LastAppliedConfigAnnotation)
	if len(org.Annotations) == 0 {
		org.Annotations = nil
	}
	internMeta(&org.ObjectMeta)
	for i := range org.Status.Conditions {
		c := &org.Status.Conditions[i]
		c.Type, c.Reason, c.Message = internShared(c.Type), internShared(c.Reason), internShared(c.Message)
		c.Status = metav1.ConditionStatus(internShared(string(c.Status)))
	}
	// The fleet's organizations share their cluster, its host and the
	// bucket; the rest of the status is their own.
	db, st := &org.Status.Database, &org.Status.Storage
	db.Cluster, db.Host, st.Bucket = internShared(db.Cluster), internShared(db.Host), internShared(st.Bucket)
	return org, nil
}

// TransformMetadata is the cache's transform for every other object, among
// them the namespaces it holds as metadata only: the object without its
// managed fields, with its label and annotation keys shared.
func TransformMetadata(obj any) (any, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return obj, nil
	}
	if m.GetManagedFields() != nil {
		m.SetManagedFields(nil)
	}
	m.SetLabels(internKeys(m.GetLabels()))
	m.SetAnnotations(internKeys(m.GetAnnotations()))
	return obj, nil
}

// internMeta shares the well-known strings of an object's metadata.
func internMeta(m *metav1.ObjectMeta) {
	m.Labels = internKeys(m.Labels)
	m.Annotations = internKeys(m.Annotations)
	for i, f := range m.Finalizers {
		m.Finalizers[i] = intern(f)
	}
	for i := range m.OwnerReferences {
		ref := &m.OwnerReferences[i]
		ref.APIVersion, ref.Kind = intern(ref.APIVersion), intern(ref.Kind)
		ref.Controller, ref.BlockOwnerDeletion = internBool(ref.Controller), internBool(ref.BlockOwnerDeletion)
	}
}

// sharedTrue and sharedFalse are what the cached objects' *bool fields
// point to: the cache hands out deep copies, so none is written through.
var sharedTrue, sharedFalse = true, false

// internBool is the shared pointer to *b's value, or nil.
func internBool(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return &sharedTrue
	}
	return &sharedFalse
}

// internKeys is m with its keys, and those of its values that are well
// known, shared. It is a new map: assigning to a key present would keep the
// map's own copy of the key.
func internKeys(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[intern(k)] = intern(v)
	}
	return out
}

// wellKnown holds one copy of each string the operator's objects repeat
// from one to the next: label, annotation and data keys, and the like.
var wellKnown = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		LabelManagedBy, ManagedByValue, LabelOrganization, AnnotationPasswordVerifier, corev1.LabelMetadataName,
		AnnotationRotatedAt, AnnotationRotationToken, AnnotationPreviousValidUntil, AnnotationBudgetedLogins,
		AnnotationAdoption, AnnotationRetainedFrom,
		tenancyv1alpha1.AnnotationCluster, tenancyv1alpha1.AnnotationBudgetedConnections, tenancyv1alpha1.FinalizerName,
		tenancyv1alpha1.GroupVersion.String(), "Organization",
		"username", "password", "previous-username", "previous-password",
		"access-key-id", "secret-access-key", "previous-access-key-id", "previous-secret-access-key",
		"pending-access-key-id", "pending-secret-access-key",
	} {
		m[s] = s
	}
	return m
})

// intern is the shared copy of s if s is well known, else s.
func intern(s string) string {
	if v, ok := wellKnown()[s]; ok {
		return v
	}
	return s
}

// sharedStrings holds one copy of each string seen that the fleet's
// objects repeat without it being known in advance: the types, statuses,
// reasons and messages of conditions, which the operator writes from a few
// dozen formats, and the cluster, host and bucket of the status. A message
// that names its organization (a failure's) takes a place for nothing, so
// maxSharedStrings bounds them.
var sharedStrings = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

const maxSharedStrings = 1024

// internShared is the shared copy of s (see sharedStrings).
func internShared(s string) string {
	if s == "" {
		return s
	}
	sharedStrings.Lock()
	defer sharedStrings.Unlock()
	if v, ok := sharedStrings.m[s]; ok {
		return v
	}
	if len(sharedStrings.m) < maxSharedStrings {
		sharedStrings.m[s] = s
	}
	return s
}
