package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/storage"
)

// reconcileStorage ensures the prefix marker, the organization's access
// (its scoped IAM user and the one key the Secret holds, decided by
// storage.EnsureAccess from the Secret's current key) and the storage
// Secret.
func (r *OrganizationReconciler) reconcileStorage(ctx context.Context, s *scope) error {
	err := runPhases(ctx, s, "storage", r.storagePhases())
	s.outcome.storage = storagePart.result(err, "S3 or IAM")
	return err
}

// storagePhases are the storage part, in order; a phase without a step
// only reads or records.
func (r *OrganizationReconciler) storagePhases() []phase {
	return []phase{
		{run: r.adoptStorage, when: adoptsStorage},
		{step: "prefix", run: r.ensurePrefix},
		{run: r.readStorageSecret},
		{run: r.planStorageRotation},
		{step: "accessKey", run: r.ensureAccess},
		{step: "storageSecret", run: r.writeStorageSecret},
		{run: r.recordStorage},
	}
}

func (r *OrganizationReconciler) ensurePrefix(ctx context.Context, s *scope) error {
	ensure := r.Storage.EnsurePrefix
	if s.storageAtRest() {
		ensure = r.Storage.EnsurePrefixAtRest
	}
	created, err := ensure(ctx, s.prefix, s.storageMarker())
	if err != nil {
		return fmt.Errorf("ensuring prefix %s: %w", s.prefix, err)
	}
	if created {
		s.stNotes.add("created prefix s3://%s/%s", r.Storage.Bucket(), s.prefix)
	}
	return nil
}

// storageAtRest reports whether the organization's storage is at rest: it
// was Ready, and its status is of the current spec and prefix. Its
// per-organization checks in S3 and IAM then run on their own cadence
// (--storage-check-passes) rather than at every pass.
func (s *scope) storageAtRest() bool {
	org := s.org
	ready := meta.FindStatusCondition(org.Status.Conditions, tenancyv1alpha1.ConditionReady)
	return ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == org.Generation &&
		org.Status.ObservedGeneration == org.Generation && org.Status.Storage.Prefix == s.prefix
}

// readStorageSecret reads the storage Secret and starts the data it is to
// hold.
func (r *OrganizationReconciler) readStorageSecret(ctx context.Context, s *scope) error {
	secret, err := r.ownedSecret(ctx, s.namespace, naming.StorageSecretName(s.org.Name), s)
	if err != nil {
		return err
	}
	if secret != nil && (rotates(s.org) || secretKey(secret, "previous-") != (storage.AccessKey{}) || secretKey(secret, "pending-") != (storage.AccessKey{})) {
		// Its keys decide which keys of the user are deleted.
		if secret, err = r.freshSecret(ctx, secret); err != nil {
			return err
		}
	}
	s.st.secret = secret
	rot := readRotation(secret, s.org.Spec.Credentials, time.Now())
	if s.org.Spec.Storage.Access == tenancyv1alpha1.StorageAccessNone {
		// No key, nothing to rotate: every token is acted on.
		rot = rotation{issuedAt: rot.issuedAt, switched: rot.switched, token: s.org.Spec.Credentials.RotationToken}
	}
	s.st.rot = &rot
	if secret != nil {
		s.st.current, s.st.pending = secretKey(secret, ""), secretKey(secret, "pending-")
		if !rot.validUntil.IsZero() {
			s.st.previous = secretKey(secret, "previous-")
		}
	}
	s.st.data = map[string][]byte{
		"bucket":   []byte(r.Storage.Bucket()),
		"prefix":   []byte(s.prefix),
		"region":   []byte(r.Storage.Region()),
		"endpoint": []byte(r.Settings.TenantS3Endpoint),
	}
	return nil
}

// secretKey reads the access key under a prefix of the storage Secret's
// keys: "" for the current one, "previous-" or "pending-".
func secretKey(secret *corev1.Secret, prefix string) storage.AccessKey {
	return storage.AccessKey{ID: string(secret.Data[prefix+"access-key-id"]), Secret: string(secret.Data[prefix+"secret-access-key"])}
}

// planStorageRotation ends a grace period that is over, whose key
// EnsureAccess then deletes, and asks for a rotation that is due. A
// rotation waits while a grace period runs: a user has two keys at most.
func (r *OrganizationReconciler) planStorageRotation(_ context.Context, s *scope) error {
	spec, now, rot := s.org.Spec.Credentials, time.Now(), *s.st.rot
	defer func() { s.st.wake.schedule(*s.st.rot, spec, now) }()
	if s.org.Spec.Storage.Access == tenancyv1alpha1.StorageAccessNone || s.st.secret == nil {
		return nil
	}
	if s.st.previous.ID != "" && !rot.inGrace(now) {
		s.st.revoked, s.st.previous = s.st.previous.ID, storage.AccessKey{}
		rot.validUntil = time.Time{}
		s.st.rot = &rot
	}
	if rot.due(spec, now) == "" {
		return nil
	}
	if s.st.previous.ID != "" {
		// The deferred schedule wakes the Organization when the grace
		// period ends: IAM allows two keys only.
		return nil
	}
	if s.st.revoked != "" {
		s.st.wake.at(now.Add(pendingRotation))
		return nil
	}
	s.st.rotate = true
	return nil
}

// ensureAccess makes the organization's access what its spec asks:
// storage.EnsureAccess keeps the Secret's key while it is usable and
// otherwise issues the one the Secret will hold, carries a rotation on, or,
// with storage.access None, deletes the user.
func (r *OrganizationReconciler) ensureAccess(ctx context.Context, s *scope) error {
	req := storage.AccessRequest{
		Org:      s.org.Name,
		Marker:   s.storageMarker(),
		Prefix:   s.prefix,
		None:     s.org.Spec.Storage.Access == tenancyv1alpha1.StorageAccessNone,
		Current:  s.st.current,
		Previous: s.st.previous,
		Pending:  s.st.pending,
		Rotate:   s.st.rotate,
		// A key whose grace period just ended is deleted now, whatever
		// the cadence says: the Secret and the Event say it is.
		AtRest: s.storageAtRest() && s.st.revoked == "",
	}
	access, err := r.Storage.EnsureAccess(ctx, req)
	for _, c := range access.Changes {
		s.stNotes.add("%s", c)
	}
	if err != nil {
		return fmt.Errorf("ensuring access for IAM user %s: %w", access.User, err)
	}
	if req.None {
		return nil
	}
	setKey := func(prefix string, k storage.AccessKey) {
		if k.ID != "" {
			s.st.data[prefix+"access-key-id"], s.st.data[prefix+"secret-access-key"] = []byte(k.ID), []byte(k.Secret)
		}
	}
	setKey("", access.Key)
	setKey("previous-", access.Previous)
	setKey("pending-", access.Pending)
	s.st.current, s.st.previous = access.Key, access.Previous
	switch {
	case access.Switched:
		s.st.switched = true
		next := rotated(s.org.Spec.Credentials, time.Now())
		s.st.rot = &next
	case access.Previous.ID == "" && !s.st.rot.validUntil.IsZero():
		// The previous key is gone, whatever its grace period said.
		rot := *s.st.rot
		rot.validUntil = time.Time{}
		s.st.rot = &rot
	}
	if access.Pending.ID != "" {
		// Looked at again soon: S3 honours a new key within seconds to
		// minutes.
		s.st.wake.at(time.Now().Add(pendingRotation))
	}
	return nil
}

func (r *OrganizationReconciler) writeStorageSecret(ctx context.Context, s *scope) error {
	name := naming.StorageSecretName(s.org.Name)
	if err := r.writeSecret(ctx, s, &s.stNotes, name, s.st.secret, s.st.data, s.st.rot.annotations()); err != nil {
		return err
	}
	switch {
	case s.st.switched:
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeNormal, tenancyv1alpha1.EventReasonRotated, "Rotate",
			"Switched Secret %s/%s to access key %s; access key %s keeps working until %s",
			s.namespace, name, s.st.current.ID, s.st.previous.ID, s.st.rot.validUntil.UTC().Format(time.RFC3339))
	case s.st.revoked != "":
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeNormal, tenancyv1alpha1.EventReasonRotated, "Rotate",
			"Deleted access key %s at the end of its grace period; Secret %s/%s holds access key %s only",
			s.st.revoked, s.namespace, name, s.st.current.ID)
	}
	return nil
}

// recordStorage reports the provisioned prefix on the status.
func (r *OrganizationReconciler) recordStorage(_ context.Context, s *scope) error {
	s.org.Status.Storage = tenancyv1alpha1.StorageStatus{
		Bucket:     r.Storage.Bucket(),
		Prefix:     s.prefix,
		URL:        fmt.Sprintf("s3://%s/%s", r.Storage.Bucket(), s.prefix),
		SecretName: naming.StorageSecretName(s.org.Name),
	}
	return nil
}
