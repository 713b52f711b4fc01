package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/storage"
)

// reconcileStorage ensures the prefix marker, the scoped IAM user and one
// working key, and the storage Secret. A key is created only when the
// Secret lacks a working one; other keys of the user are deleted once the
// Secret holds the new one, so a key created before a crash does not
// outlive the next reconcile.
func (r *OrganizationReconciler) reconcileStorage(ctx context.Context, s *scope) error {
	err := runPhases(ctx, s, "storage", r.storagePhases())
	s.outcome.storage = storagePart.result(err, "S3 or IAM")
	return err
}

// storagePhases are the storage part, in order; a phase without a step
// only reads, records or tidies up.
func (r *OrganizationReconciler) storagePhases() []phase {
	return []phase{
		{step: "prefix", run: r.ensurePrefix},
		{run: r.readStorageSecret},
		{step: "accessKey", run: r.ensureAccess},
		{step: "storageSecret", run: r.writeStorageSecret},
		{run: r.deleteStaleKeys, when: sharedUser},
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
	s.st.data = map[string][]byte{
		"bucket":   []byte(r.Storage.Bucket()),
		"prefix":   []byte(s.prefix),
		"region":   []byte(r.Storage.Region()),
		"endpoint": []byte(r.Settings.TenantS3Endpoint),
	}
	return nil
}

// withKey reports whether the spec asks for an access key.
func withKey(s *scope) bool { return s.org.Spec.Storage.Access != tenancyv1alpha1.StorageAccessNone }

// sharedUser reports a user that may hold keys other than the Secret's:
// one with a key that was not created in this reconcile.
func sharedUser(s *scope) bool { return withKey(s) && !s.st.onlyKey }

// ensureAccess gives the Secret a working key of the prefix-scoped user,
// or, when the spec asks for no access, deletes the user.
func (r *OrganizationReconciler) ensureAccess(ctx context.Context, s *scope) error {
	user := r.Storage.UserName(s.org.Name)
	s.st.user = user
	if !withKey(s) {
		deleted, err := r.Storage.DeleteOwnedPrefixUser(ctx, user, s.storageMarker())
		if errors.Is(err, storage.ErrConflict) {
			// Not ours: nothing of this organization to revoke.
			return nil
		}
		if deleted {
			s.stNotes.add("deleted IAM user %s and its keys: storage.access is None", user)
		}
		if err != nil {
			return fmt.Errorf("ensuring access for IAM user %s: %w", user, err)
		}
		return nil
	}
	id, key, fresh, err := r.ensureAccessKey(ctx, s, user, s.st.secret)
	if err != nil {
		return fmt.Errorf("ensuring access for IAM user %s: %w", user, err)
	}
	s.st.onlyKey = fresh
	s.st.data["access-key-id"], s.st.data["secret-access-key"] = []byte(id), []byte(key)
	return nil
}

func (r *OrganizationReconciler) writeStorageSecret(ctx context.Context, s *scope) error {
	return r.writeSecret(ctx, s, &s.stNotes, naming.StorageSecretName(s.org.Name), s.st.secret, s.st.data, nil)
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

// ensureAccessKey ensures the prefix-scoped user and returns the key the
// Secret should hold: the Secret's own while it works, a new one otherwise.
// fresh is set when the user was created here: it holds no key but the one
// returned.
func (r *OrganizationReconciler) ensureAccessKey(ctx context.Context, s *scope, user string, secret *corev1.Secret) (id, key string, fresh bool, err error) {
	_, change, err := r.Storage.EnsurePrefixUser(ctx, s.org.Name, s.storageMarker(), s.prefix)
	if err != nil {
		return "", "", false, err
	}
	switch change {
	case storage.UserCreated:
		s.stNotes.add("created IAM user %s with access to prefix %s only", user, s.prefix)
	case storage.PolicyUpdated:
		s.stNotes.add("set IAM user %s's policy to prefix %s", user, s.prefix)
	case storage.BoundaryUpdated:
		s.stNotes.add("set IAM user %s's permissions boundary", user)
	}
	if secret != nil {
		id, key = string(secret.Data["access-key-id"]), string(secret.Data["secret-access-key"])
	}
	if id != "" && key != "" && change != storage.UserCreated {
		// Not AccessKeyWorks alone: right after a rotation the Secret's key
		// may not work yet on AWS, and the Secret update that rotation made
		// brings this reconcile at once. Calling that key broken would
		// rotate again, and again.
		usable, err := r.Storage.AccessKeyUsable(ctx, user, id, key, s.prefix)
		if err != nil || usable {
			return id, key, false, err
		}
	}
	if change != storage.UserCreated {
		// A user may hold two keys and none of this user's is in use, so
		// clear them before issuing the one the Secret will hold. A user
		// created a moment ago has none.
		if _, err := r.Storage.DeleteAccessKeys(ctx, user); err != nil {
			return "", "", false, err
		}
	}
	ak, err := r.Storage.CreateAccessKey(ctx, user)
	if err != nil {
		return "", "", false, err
	}
	verb := "issued"
	if id != "" {
		verb = "rotated to"
	}
	s.stNotes.add("%s access key %s for prefix %s", verb, ak.ID, s.prefix)
	return ak.ID, ak.Secret, change == storage.UserCreated, nil
}

// deleteStaleKeys removes every key of the user but the one in the Secret.
func (r *OrganizationReconciler) deleteStaleKeys(ctx context.Context, s *scope) error {
	user, current := s.st.user, string(s.st.data["access-key-id"])
	keys, err := r.Storage.ListAccessKeys(ctx, user)
	if err != nil {
		return fmt.Errorf("listing access keys of %s: %w", user, err)
	}
	if len(keys) <= 1 {
		return nil
	}
	n, err := r.Storage.DeleteAccessKeys(ctx, user, current)
	if err != nil {
		return fmt.Errorf("deleting stale access keys of %s: %w", user, err)
	}
	s.stNotes.add("deleted %d stale access keys of %s", n, user)
	return nil
}
