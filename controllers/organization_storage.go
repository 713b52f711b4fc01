package controllers

import (
	"context"
	"fmt"
	"time"

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
		{step: "prefix", run: r.ensurePrefix},
		{run: r.readStorageSecret},
		{step: "accessKey", run: r.ensureAccess},
		{step: "storageSecret", run: r.writeStorageSecret},
		{run: r.recordStorage},
	}
}

func (r *OrganizationReconciler) ensurePrefix(ctx context.Context, s *scope) error {
	created, err := r.Storage.EnsurePrefix(ctx, s.prefix, s.storageMarker())
	if err != nil {
		return fmt.Errorf("ensuring prefix %s: %w", s.prefix, err)
	}
	if created {
		s.stNotes.add("created prefix s3://%s/%s", r.Storage.Bucket(), s.prefix)
	}
	return nil
}

// readStorageSecret reads the storage Secret and starts the data it is to
// hold.
func (r *OrganizationReconciler) readStorageSecret(ctx context.Context, s *scope) error {
	secret, err := r.ownedSecret(ctx, s.namespace, naming.StorageSecretName(s.org.Name), s)
	if err != nil {
		return err
	}
	s.st.secret = secret
	rot := readRotation(secret, s.org.Spec.Credentials, time.Now())
	if s.org.Spec.Storage.Access == tenancyv1alpha1.StorageAccessNone {
		// No key, nothing to rotate: every token is acted on.
		rot = rotation{issuedAt: rot.issuedAt, switched: rot.switched, token: s.org.Spec.Credentials.RotationToken}
	}
	s.st.rot = &rot
	s.st.data = map[string][]byte{
		"bucket":   []byte(r.Storage.Bucket()),
		"prefix":   []byte(s.prefix),
		"region":   []byte(r.Storage.Region()),
		"endpoint": []byte(r.Settings.TenantS3Endpoint),
	}
	return nil
}

// ensureAccess makes the organization's access what its spec asks:
// storage.EnsureAccess keeps the Secret's key while it is usable and
// otherwise issues the one the Secret will hold, or, with storage.access
// None, deletes the user.
func (r *OrganizationReconciler) ensureAccess(ctx context.Context, s *scope) error {
	req := storage.AccessRequest{
		Org:    s.org.Name,
		Marker: s.storageMarker(),
		Prefix: s.prefix,
		None:   s.org.Spec.Storage.Access == tenancyv1alpha1.StorageAccessNone,
	}
	if sec := s.st.secret; sec != nil {
		req.Current = storage.AccessKey{ID: string(sec.Data["access-key-id"]), Secret: string(sec.Data["secret-access-key"])}
	}
	access, err := r.Storage.EnsureAccess(ctx, req)
	for _, c := range access.Changes {
		s.stNotes.add("%s", c)
	}
	if err != nil {
		return fmt.Errorf("ensuring access for IAM user %s: %w", access.User, err)
	}
	if !req.None {
		s.st.data["access-key-id"], s.st.data["secret-access-key"] = []byte(access.Key.ID), []byte(access.Key.Secret)
	}
	return nil
}

func (r *OrganizationReconciler) writeStorageSecret(ctx context.Context, s *scope) error {
	return r.writeSecret(ctx, s, &s.stNotes, naming.StorageSecretName(s.org.Name), s.st.secret, s.st.data, s.st.rot.annotations())
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
