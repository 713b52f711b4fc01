package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/config"
	"github.com/orgforge/orgforge/internal/credentials"
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

// maxPasswordLength bounds a password written into the Secret by hand; the
// operator's own are far shorter.
const maxPasswordLength = 256

// errInvalidSecret marks a Secret edited into something the operator cannot
// use; a person has to fix it.
var errInvalidSecret = errors.New("invalid Secret")

// checkSecretPassword refuses a password the role cannot be given, or one
// that the Secret's uri and jdbc-url could not carry. Its errors never
// quote the password.
func checkSecretPassword(password string) error {
	switch {
	case password == "":
		return errors.New("its password is empty")
	case len(password) > maxPasswordLength:
		return fmt.Errorf("its password is longer than %d bytes", maxPasswordLength)
	}
	for i := 0; i < len(password); i++ {
		if password[i] < 0x20 || password[i] > 0x7e {
			return errors.New("its password holds a character other than printable ASCII")
		}
	}
	return nil
}

// errInvalidSpec marks a spec that passed admission but cannot be provisioned.
var errInvalidSpec = errors.New("invalid spec")

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

// reconcileNormal runs the ordered steps. The database and the storage are
// independent: one failing does not hold the other back.
func (r *OrganizationReconciler) reconcileNormal(ctx context.Context, s *scope) (ctrl.Result, error) {
	if err := r.validate(s); err != nil {
		s.outcome.database = result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: err.Error()}
		s.outcome.storage = s.outcome.database
		// Nothing changes until the spec does; no retry. The Warning is
		// failureEvents', one for both conditions.
		return ctrl.Result{}, nil
	}
	if err := r.checkExtensions(ctx, s); err != nil {
		s.outcome.database = result{reason: tenancyv1alpha1.ReasonInvalidSpec, message: conditionMessage(err)}
		s.outcome.storage = s.outcome.database
		return ctrl.Result{}, nil
	}
	if err := r.timed("namespace", func() error { return r.ensureNamespace(ctx, s) }); err != nil {
		msg := fmt.Sprintf("Waiting for namespace %s: %v", s.namespace, err)
		s.outcome.database = result{reason: tenancyv1alpha1.ReasonProvisioning, message: msg}
		s.outcome.storage = s.outcome.database
		if errors.Is(err, errInvalidSpec) {
			s.outcome.database.reason = tenancyv1alpha1.ReasonInvalidSpec
			s.outcome.storage.reason = tenancyv1alpha1.ReasonInvalidSpec
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	// The two parts touch different services and different fields of s,
	// so they run at once: a reconcile takes as long as the slower one.
	dbErr, stErr := concurrently(
		func() error { return r.reconcileDatabase(ctx, s) },
		func() error { return r.reconcileStorage(ctx, s) })
	if err := errors.Join(retryable(dbErr), retryable(stErr)); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.Settings.ResyncPeriod}, nil
}

// concurrently runs a in a new goroutine and b in this one, and returns
// both their errors once both have returned; b's panic, too, waits for a. A
// panic in a becomes its error, as controller-runtime makes one of a panic
// in the reconcile's own goroutine.
func concurrently(a, b func() error) (errA, errB error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				errA = fmt.Errorf("panic: %v", p)
			}
		}()
		errA = a()
	}()
	defer func() { <-done }()
	errB = b()
	return errA, errB
}

// recoverStep, deferred by a part of the reconcile after the deferred call
// that reports its outcome, turns a panic into the part's error, logged
// with its stack: the part's condition then reports a failure, not the
// last error it happened to hold.
func recoverStep(ctx context.Context, part string, err *error) {
	if p := recover(); p != nil {
		ctrl.LoggerFrom(ctx).Error(fmt.Errorf("%v", p), "Panic in the "+part+" steps", "stack", string(debug.Stack()))
		*err = fmt.Errorf("internal error in the %s steps: %v", part, p)
	}
}

// retryable drops errors that only a change of spec or a person can fix:
// those are reported on the conditions, not retried with backoff.
func retryable(err error) error {
	if err == nil || errors.Is(err, aurora.ErrConflict) || errors.Is(err, storage.ErrConflict) ||
		errors.Is(err, aurora.ErrInvalid) || errors.Is(err, storage.ErrInvalid) || errors.Is(err, errInvalidSpec) ||
		errors.Is(err, errInvalidSecret) {
		return nil
	}
	return err
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

// ensureNamespace creates the Secrets' namespace when missing and labels it
// as ours; a namespace someone else made is used as it is.
func (r *OrganizationReconciler) ensureNamespace(ctx context.Context, s *scope) error {
	ns := &corev1.Namespace{}
	err := r.Get(ctx, types.NamespacedName{Name: s.namespace}, ns)
	switch {
	case apierrors.IsNotFound(err):
		ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.namespace, Labels: s.labels()}}
		err := r.Create(ctx, ns)
		switch {
		case apierrors.IsAlreadyExists(err):
			return nil
		case err != nil:
			return fmt.Errorf("creating namespace %s: %w", s.namespace, err)
		}
		s.freshNamespace = true
		s.nsNotes.add("created namespace %s", s.namespace)
		return nil
	case err != nil:
		return fmt.Errorf("reading namespace %s: %w", s.namespace, err)
	case !ns.DeletionTimestamp.IsZero():
		return fmt.Errorf("namespace %s is being deleted", s.namespace)
	}
	return nil
}

// ownsNamespace reports whether the operator created the namespace for this
// organization, and so may delete it.
func ownsNamespace(ns *corev1.Namespace, org string) bool {
	return ns.Labels[LabelManagedBy] == ManagedByValue && ns.Labels[LabelOrganization] == org
}

// reconcileDatabase ensures the role, the database, its security, the
// extensions and the database Secret, in that order. The role's password is
// changed before the Secret is written, so a crash between the two is
// repaired by the next reconcile, which finds no Secret and sets a new one.
func (r *OrganizationReconciler) reconcileDatabase(ctx context.Context, s *scope) (err error) {
	defer func() { s.outcome.database = databaseResult(err, r.Database.Endpoint()) }()
	defer recoverStep(ctx, "database", &err)
	log := ctrl.LoggerFrom(ctx)
	spec := s.org.Spec.Database

	secret, err := r.ownedSecret(ctx, s.namespace, naming.DatabaseSecretName(s.org.Name), s)
	if err != nil {
		return err
	}
	// The Secret's password is the desired one: a person may rotate it by
	// editing the Secret. One that differs from what the operator last set
	// is given to the role; one that cannot be used changes nothing.
	password, edited := "", false
	if secret != nil && string(secret.Data["username"]) == s.role {
		password = string(secret.Data["password"])
		if err := checkSecretPassword(password); err != nil {
			return fmt.Errorf("%w: Secret %s/%s: %v; the role keeps its password until the Secret holds a usable one",
				errInvalidSecret, s.namespace, secret.Name, err)
		}
		same, err := credentials.VerifyPassword(secret.Annotations[AnnotationPasswordVerifier], password)
		edited = err != nil || !same
	}

	var change aurora.Change
	// verifier is set when the role is given a password here; it then
	// becomes the Secret's AnnotationPasswordVerifier.
	verifier := ""
	err = r.timed("role", func() error {
		// A new Secret, or a role to create: the role gets a password now
		// and the Secret is written after it. Only a Secret's password
		// needs a look at the role, to learn whether it must be created.
		setPassword := password == "" || edited
		if !setPassword {
			info, err := r.Database.InspectRole(ctx, s.role)
			if err != nil {
				return err
			}
			setPassword = !info.Exists
		}
		if setPassword {
			var err error
			if password == "" {
				if password, err = r.Creds.NewPassword(); err != nil {
					return err
				}
			}
			if verifier, err = r.Creds.Verifier(password); err != nil {
				return err
			}
		}
		var err error
		change, err = r.Database.EnsureRole(ctx, aurora.RoleSpec{
			Name: s.role, Marker: s.dbMarker(), Verifier: verifier, ConnLimit: spec.Pool.MaxConnections,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("ensuring role %s: %w", s.role, err)
	}
	s.dbNotes.change(change, "role "+s.role)
	if edited {
		s.dbNotes.add("set role %s's password to the one in Secret %s/%s", s.role, s.namespace, secret.Name)
	}

	err = r.timed("database", func() error {
		change, err = r.Database.EnsureDatabase(ctx, s.database, s.role, s.dbMarker())
		return err
	})
	if err != nil {
		return fmt.Errorf("ensuring database %s: %w", s.database, err)
	}
	s.dbNotes.change(change, "database "+s.database)

	// Schema public inside the database is checked when the database is
	// new, the spec changed or DatabaseReady is not True. A resync of a
	// Ready Organization checks who may connect, and enters the database
	// only if PUBLIC still may, as after an interrupted securing. Inside it
	// the tenant is the owner: what it changes there reaches no other
	// tenant, who cannot connect.
	inside := change != aurora.Unchanged || s.org.Status.ObservedGeneration != s.org.Generation ||
		!meta.IsStatusConditionTrue(s.org.Status.Conditions, tenancyv1alpha1.ConditionDatabaseReady)
	err = r.timed("secure", func() error {
		if inside {
			change, err = r.Database.SecureDatabase(ctx, s.database, s.role)
		} else {
			change, err = r.Database.SecureDatabaseAccess(ctx, s.database, s.role)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("securing database %s: %w", s.database, err)
	}
	if change != aurora.Unchanged {
		s.dbNotes.add("secured database %s: no access for PUBLIC", s.database)
	}

	if len(spec.Extensions) > 0 {
		exts := make([]string, len(spec.Extensions))
		for i, e := range spec.Extensions {
			exts[i] = string(e)
		}
		var created []string
		err = r.timed("extensions", func() error {
			created, err = r.Database.EnsureExtensions(ctx, s.database, exts)
			return err
		})
		if err != nil {
			return fmt.Errorf("ensuring extensions in %s: %w", s.database, err)
		}
		for _, e := range created {
			s.dbNotes.add("created extension %s in database %s", e, s.database)
		}
	}

	data := r.databaseSecretData(s, password)
	// The verifier carries a new salt each time, so the Secret keeps the
	// one it has until the role's password changes.
	if verifier == "" && secret != nil {
		verifier = secret.Annotations[AnnotationPasswordVerifier]
	}
	if err := r.timed("databaseSecret", func() error {
		return r.writeSecret(ctx, s, &s.dbNotes, naming.DatabaseSecretName(s.org.Name), secret, data,
			map[string]string{AnnotationPasswordVerifier: verifier})
	}); err != nil {
		return err
	}
	s.org.Status.Database = tenancyv1alpha1.DatabaseStatus{
		Name:       s.database,
		Host:       r.Settings.TenantDatabaseHost,
		Port:       int32(r.Settings.TenantDatabasePort),
		Role:       s.role,
		SecretName: naming.DatabaseSecretName(s.org.Name),
	}
	log.V(1).Info("Database provisioned", "database", s.database)
	return nil
}

func (r *OrganizationReconciler) databaseSecretData(s *scope, password string) map[string][]byte {
	pool := s.org.Spec.Database.Pool
	host, port := r.Settings.TenantDatabaseHost, strconv.Itoa(r.Settings.TenantDatabasePort)
	sslmode := r.Settings.TenantSSLMode
	q := url.Values{}
	q.Set("sslmode", sslmode)
	q.Set("pool_min_conns", strconv.Itoa(int(pool.MinConnections)))
	q.Set("pool_max_conns", strconv.Itoa(int(pool.MaxConnections)))
	uri := url.URL{
		Scheme:   "postgresql",
		User:     url.UserPassword(s.role, password),
		Host:     net.JoinHostPort(host, port),
		Path:     "/" + s.database,
		RawQuery: q.Encode(),
	}
	return map[string][]byte{
		"host":          []byte(host),
		"port":          []byte(port),
		"dbname":        []byte(s.database),
		"username":      []byte(s.role),
		"password":      []byte(password),
		"sslmode":       []byte(sslmode),
		"uri":           []byte(uri.String()),
		"jdbc-url":      []byte(fmt.Sprintf("jdbc:postgresql://%s/%s?sslmode=%s", net.JoinHostPort(host, port), s.database, url.QueryEscape(sslmode))),
		"pool-min-size": []byte(strconv.Itoa(int(pool.MinConnections))),
		"pool-max-size": []byte(strconv.Itoa(int(pool.MaxConnections))),
	}
}

// reconcileStorage ensures the prefix marker, the scoped IAM user and one
// working key, and the storage Secret. A key is created only when the
// Secret lacks a working one; other keys of the user are deleted once the
// Secret holds the new one, so a key created before a crash does not
// outlive the next reconcile.
func (r *OrganizationReconciler) reconcileStorage(ctx context.Context, s *scope) (err error) {
	defer func() { s.outcome.storage = storageResult(err) }()
	defer recoverStep(ctx, "storage", &err)
	var created bool
	if err := r.timed("prefix", func() error {
		created, err = r.Storage.EnsurePrefix(ctx, s.prefix, s.storageMarker())
		return err
	}); err != nil {
		return fmt.Errorf("ensuring prefix %s: %w", s.prefix, err)
	}
	if created {
		s.stNotes.add("created prefix s3://%s/%s", r.Storage.Bucket(), s.prefix)
	}

	name := naming.StorageSecretName(s.org.Name)
	secret, err := r.ownedSecret(ctx, s.namespace, name, s)
	if err != nil {
		return err
	}
	data := map[string][]byte{
		"bucket":   []byte(r.Storage.Bucket()),
		"prefix":   []byte(s.prefix),
		"region":   []byte(r.Storage.Region()),
		"endpoint": []byte(r.Settings.TenantS3Endpoint),
	}
	user := r.Storage.UserName(s.org.Name)
	withKey := s.org.Spec.Storage.Access != tenancyv1alpha1.StorageAccessNone
	// onlyKey is set when the user was created here, so the key issued for
	// it is its only one.
	onlyKey := false
	if err := r.timed("accessKey", func() error {
		if !withKey {
			deleted, err := r.Storage.DeleteOwnedPrefixUser(ctx, user, s.storageMarker())
			if errors.Is(err, storage.ErrConflict) {
				// Not ours: nothing of this organization to revoke.
				return nil
			}
			if deleted {
				s.stNotes.add("deleted IAM user %s and its keys: storage.access is None", user)
			}
			return err
		}
		id, key, fresh, err := r.ensureAccessKey(ctx, s, user, secret)
		onlyKey = fresh
		data["access-key-id"], data["secret-access-key"] = []byte(id), []byte(key)
		return err
	}); err != nil {
		return fmt.Errorf("ensuring access for IAM user %s: %w", user, err)
	}
	if err := r.timed("storageSecret", func() error { return r.writeSecret(ctx, s, &s.stNotes, name, secret, data, nil) }); err != nil {
		return err
	}
	if withKey && !onlyKey {
		if err := r.deleteStaleKeys(ctx, s, user, string(data["access-key-id"])); err != nil {
			return err
		}
	}
	s.org.Status.Storage = tenancyv1alpha1.StorageStatus{
		Bucket:     r.Storage.Bucket(),
		Prefix:     s.prefix,
		URL:        fmt.Sprintf("s3://%s/%s", r.Storage.Bucket(), s.prefix),
		SecretName: name,
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

// deleteStaleKeys removes every key of user but the one in the Secret.
func (r *OrganizationReconciler) deleteStaleKeys(ctx context.Context, s *scope, user, current string) error {
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

// ownedSecret returns the Secret if it exists, nil if it does not, and a
// conflict if a Secret of that name exists that the operator did not write.
func (r *OrganizationReconciler) ownedSecret(ctx context.Context, namespace, name string, s *scope) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := r.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) && r.APIReader != nil && !s.freshNamespace {
		// The cache may not have seen a Secret written a moment ago. Taking
		// it as missing would set a new password on the role and leave the
		// Secret with the old one, so ask the API server before concluding.
		// A namespace created in this reconcile holds no Secret to miss.
		err = r.APIReader.Get(ctx, key, secret)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
	}
	if secret.Labels[LabelOrganization] != s.org.Name {
		return nil, fmt.Errorf("%w: Secret %s/%s exists and was not written by orgforge for this Organization; rename or remove it", storage.ErrConflict, namespace, name)
	}
	return secret, nil
}

// writeSecret creates the Secret or updates it when its data or the
// operator's annotations differ; an unchanged Secret costs no write. Other
// annotations are kept.
func (r *OrganizationReconciler) writeSecret(ctx context.Context, s *scope, n *notes, name string, existing *corev1.Secret, data map[string][]byte, annotations map[string]string) error {
	if existing == nil {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.namespace, Labels: s.labels(), Annotations: annotations},
			Type:       corev1.SecretTypeOpaque,
			Data:       data,
		}
		if err := controllerutil.SetControllerReference(s.org, secret, r.Scheme); err != nil {
			return err
		}
		if err := r.Create(ctx, secret); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%w: Secret %s/%s exists and was not written by orgforge for this Organization; rename or remove it", storage.ErrConflict, s.namespace, name)
			}
			return fmt.Errorf("creating Secret %s/%s: %w", s.namespace, name, err)
		}
		n.add("wrote Secret %s/%s", s.namespace, name)
		return nil
	}
	annotated := true
	for k, v := range annotations {
		annotated = annotated && existing.Annotations[k] == v
	}
	if annotated && secretDataEqual(existing.Data, data) {
		return nil
	}
	updated := existing.DeepCopy()
	updated.Data = data
	for k, v := range annotations {
		metav1.SetMetaDataAnnotation(&updated.ObjectMeta, k, v)
	}
	if err := r.Update(ctx, updated); err != nil {
		return fmt.Errorf("updating Secret %s/%s: %w", s.namespace, name, err)
	}
	n.add("updated Secret %s/%s", s.namespace, name)
	return nil
}

func secretDataEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || string(v) != string(w) {
			return false
		}
	}
	return true
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

// timed runs one step and records its duration.
func (r *OrganizationReconciler) timed(step string, fn func() error) error {
	start := time.Now()
	err := fn()
	stepDuration.WithLabelValues(step).Observe(time.Since(start).Seconds())
	return err
}

// reconcileDelete cleans up as the deletion policy says, each sub-step
// idempotent, and removes the finalizer only when all of them succeeded.
func (r *OrganizationReconciler) reconcileDelete(ctx context.Context, org *tenancyv1alpha1.Organization) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(org, tenancyv1alpha1.FinalizerName) {
		return ctrl.Result{}, nil
	}
	s := newScope(org, r.Settings)
	// One Event reports the clean-up: what was done, and what it waits on.
	var done notes
	if err := r.deleteExternal(ctx, s, &done); err != nil {
		base := org.DeepCopy()
		setDeletingCondition(org, err)
		if perr := r.Status().Patch(ctx, org, client.MergeFrom(base)); perr != nil && !apierrors.IsNotFound(perr) {
			ctrl.LoggerFrom(ctx).Error(perr, "Patching status while deleting")
		}
		msg := "Clean-up is waiting: " + conditionMessage(err)
		if len(done) > 0 {
			msg += ". Done so far: " + strings.Join(done, "; ")
		}
		r.Recorder.Eventf(org, nil, corev1.EventTypeWarning, tenancyv1alpha1.EventReasonDeleteFailed, "Delete", "%s", eventNote([]string{msg}))
		return ctrl.Result{}, err
	}
	if len(done) > 0 {
		reason := tenancyv1alpha1.EventReasonDeleted
		if org.Spec.DeletionPolicy != tenancyv1alpha1.DeletionPolicyDelete {
			reason = tenancyv1alpha1.EventReasonRetained
		}
		r.Recorder.Eventf(org, nil, corev1.EventTypeNormal, reason, "Delete", "%s", eventNote(done))
	}
	err := r.timed("removeFinalizer", func() error {
		// Optimistic locking, as when the finalizer is added: another
		// controller's finalizer added since the read must survive.
		patch := client.MergeFromWithOptions(org.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.RemoveFinalizer(org, tenancyv1alpha1.FinalizerName)
		return r.Patch(ctx, org, patch)
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// deletionScope fills s with what the Organization recorded, not with what
// today's spec and settings would make: a spec or an operator setting that
// no longer validates (a system namespace after a restart without
// --allow-system-namespaces) must not skip the clean-up of what was made
// under the old ones. Every name is still checked against its ownership
// marker before anything is deleted.
func (r *OrganizationReconciler) deletionScope(s *scope) {
	st := s.org.Status
	if st.Namespace != "" {
		s.namespace = st.Namespace
	}
	if st.Database.Name != "" {
		s.database = st.Database.Name
	}
	if st.Database.Role != "" {
		s.role = st.Database.Role
	}
	s.prefix = st.Storage.Prefix
}

// prefixesToDelete lists the prefixes the clean-up looks at: the one the
// status recorded and the one today's template gives, which a reconcile may
// have claimed before it could record it. deletePrefix purges only those
// whose marker carries this Organization's UID.
func (r *OrganizationReconciler) prefixesToDelete(s *scope) []string {
	var out []string
	if s.prefix != "" {
		out = append(out, s.prefix)
	}
	if p, err := naming.Prefix(r.Settings.PrefixTemplate, s.org.Name); err == nil && p != s.prefix {
		out = append(out, p)
	}
	return out
}

// deleteExternal notes in done each thing it deleted or kept. The storage
// and the database are cleaned up at once; the namespace goes last.
func (r *OrganizationReconciler) deleteExternal(ctx context.Context, s *scope, done *notes) error {
	if err := naming.ValidateOrgName(s.org.Name); err != nil {
		// Names are immutable and every reconcile checks this one first:
		// nothing was ever provisioned under a name that does not validate.
		return nil
	}
	r.deletionScope(s)
	if s.org.Spec.DeletionPolicy != tenancyv1alpha1.DeletionPolicyDelete {
		if err := r.deleteUser(ctx, s, done); err != nil {
			return err
		}
		if err := r.keepDatabaseSecret(ctx, s); err != nil {
			return err
		}
		kept := "no prefix"
		if p := r.prefixesToDelete(s); len(p) > 0 {
			kept = fmt.Sprintf("prefix s3://%s/%s", r.Storage.Bucket(), p[0])
		}
		done.add("retained database %s, role %s, %s and Secret %s/%s (deletionPolicy Retain)",
			s.database, s.role, kept, s.namespace, naming.DatabaseSecretName(s.org.Name))
		return nil
	}

	var stDone, dbDone notes
	dbErr, stErr := concurrently(
		func() error { return r.timed("dropDatabase", func() error { return r.dropDatabase(ctx, s, &dbDone) }) },
		func() error {
			// The key goes first, so that the tenant loses access before
			// its data goes.
			if err := r.timed("deleteUser", func() error { return r.deleteUser(ctx, s, &stDone) }); err != nil {
				return err
			}
			return r.timed("deletePrefix", func() error {
				for _, p := range r.prefixesToDelete(s) {
					if err := r.deletePrefix(ctx, s, p, &stDone); err != nil {
						return err
					}
				}
				return nil
			})
		})
	*done = append(*done, stDone...)
	*done = append(*done, dbDone...)
	if err := errors.Join(stErr, dbErr); err != nil {
		return err
	}

	return r.timed("deleteNamespace", func() error { return r.deleteNamespace(ctx, s, done) })
}

// deleteNamespace deletes the organization's namespace, if orgforge made it
// for this Organization.
func (r *OrganizationReconciler) deleteNamespace(ctx context.Context, s *scope, done *notes) error {
	ns := &corev1.Namespace{}
	err := r.Get(ctx, types.NamespacedName{Name: s.namespace}, ns)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("reading namespace %s: %w", s.namespace, err)
	case ownsNamespace(ns, s.org.Name) && ns.DeletionTimestamp.IsZero():
		other, err := r.namespaceUser(ctx, s)
		if err != nil {
			return err
		}
		if other != "" {
			done.add("kept namespace %s: Organization %s uses it", s.namespace, other)
			return nil
		}
		if err := r.Delete(ctx, ns); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting namespace %s: %w", s.namespace, err)
		}
		done.add("deleted namespace %s", s.namespace)
	}
	return nil
}

// namespaceUser names another Organization whose Secrets go to s's
// namespace, or returns "". Two Organizations may share a namespace
// (spec.namespace); the one that created it must not take the other's
// Secrets with it when it goes.
func (r *OrganizationReconciler) namespaceUser(ctx context.Context, s *scope) (string, error) {
	var list tenancyv1alpha1.OrganizationList
	if err := r.List(ctx, &list); err != nil {
		return "", fmt.Errorf("listing Organizations that may use namespace %s: %w", s.namespace, err)
	}
	for i := range list.Items {
		o := &list.Items[i]
		// One being deleted with Delete keeps nothing there; counting it
		// would leave the namespace to nobody when both go at once.
		if o.UID == s.org.UID || (!o.DeletionTimestamp.IsZero() && o.Spec.DeletionPolicy == tenancyv1alpha1.DeletionPolicyDelete) {
			continue
		}
		if o.Status.Namespace == s.namespace || newScope(o, r.Settings).namespace == s.namespace {
			return o.Name, nil
		}
	}
	return "", nil
}

// deleteUser deletes the organization's IAM user and its keys, unless
// someone else's user has its name.
func (r *OrganizationReconciler) deleteUser(ctx context.Context, s *scope, done *notes) error {
	user := r.Storage.UserName(s.org.Name)
	deleted, err := r.Storage.DeleteOwnedPrefixUser(ctx, user, s.storageMarker())
	switch {
	case errors.Is(err, storage.ErrConflict):
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeWarning, "IAMUserNotOwned", "Delete", "Left IAM user %s alone: orgforge did not create it for this Organization", user)
	case err != nil:
		return fmt.Errorf("deleting IAM user %s: %w", user, err)
	case deleted:
		done.add("deleted IAM user %s and its access keys", user)
	}
	return nil
}

// deletePrefix deletes the objects under prefix only when its marker
// carries this Organization's UID. A prefix with no marker was never
// claimed by this Organization (EnsurePrefix writes the marker before
// anything else uses the prefix), so its objects are someone else's.
func (r *OrganizationReconciler) deletePrefix(ctx context.Context, s *scope, prefix string, done *notes) error {
	owner, found, err := r.Storage.PrefixOwner(ctx, prefix)
	if err != nil {
		return fmt.Errorf("reading prefix marker %s: %w", prefix, err)
	}
	switch {
	case !found:
		return nil
	case owner.UID != string(s.org.UID):
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeWarning, "PrefixNotOwned", "Delete", "Left prefix %s alone: it belongs to another Organization", prefix)
		return nil
	}
	n, err := r.Storage.DeletePrefix(ctx, prefix)
	if err != nil {
		return fmt.Errorf("deleting prefix %s: %w", prefix, err)
	}
	if n > 0 {
		done.add("deleted %d objects under %s", n, prefix)
	}
	return nil
}

// dropDatabase drops the database, then the role, each only if ours.
func (r *OrganizationReconciler) dropDatabase(ctx context.Context, s *scope, done *notes) error {
	dropped, err := r.Database.DropDatabase(ctx, s.database, s.dbMarker())
	switch {
	case errors.Is(err, aurora.ErrConflict):
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeWarning, "DatabaseNotOwned", "Delete", "Left database %s alone: orgforge did not create it for this Organization", s.database)
	case err != nil:
		return fmt.Errorf("dropping database %s: %w", s.database, err)
	case dropped:
		done.add("dropped database %s", s.database)
	}
	dropped, err = r.Database.DropRole(ctx, s.role, s.dbMarker())
	switch {
	case errors.Is(err, aurora.ErrConflict):
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeWarning, "RoleNotOwned", "Delete", "Left role %s alone: orgforge did not create it for this Organization", s.role)
	case err != nil:
		return fmt.Errorf("dropping role %s: %w", s.role, err)
	case dropped:
		done.add("dropped role %s", s.role)
	}
	return nil
}

// keepDatabaseSecret drops the database Secret's owner reference, so that
// garbage collection does not take the only copy of a retained role's
// password with the Organization.
func (r *OrganizationReconciler) keepDatabaseSecret(ctx context.Context, s *scope) error {
	secret := &corev1.Secret{}
	err := r.Get(ctx, types.NamespacedName{Namespace: s.namespace, Name: naming.DatabaseSecretName(s.org.Name)}, secret)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(secret.OwnerReferences) == 0 {
		return nil
	}
	patch := client.MergeFrom(secret.DeepCopy())
	secret.OwnerReferences = nil
	if err := r.Patch(ctx, secret, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("keeping Secret %s/%s: %w", s.namespace, secret.Name, err)
	}
	return nil
}
