package controllers

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/credentials"
	"github.com/orgforge/orgforge/internal/naming"
)

// reconcileDatabase ensures the role, the database, its security, the
// extensions and the database Secret, in that order, on the organization's
// DatabaseCluster; placeErr is why it could not be placed there, if it
// could not. The role's password is changed before the Secret is written,
// so a crash between the two is repaired by the next reconcile, which finds
// no Secret and sets a new one.
func (r *OrganizationReconciler) reconcileDatabase(ctx context.Context, s *scope, placeErr error) error {
	err := placeErr
	if err == nil {
		err = runPhases(ctx, s, "database", r.databasePhases())
	}
	what := "DatabaseCluster " + s.cluster
	if s.dbs != nil {
		what += " (PostgreSQL at " + s.dbs.Endpoint() + ")"
	}
	s.outcome.database = databasePart.result(err, what)
	return err
}

// databasePhases are the database part, in order; a phase without a step
// only reads or records.
func (r *OrganizationReconciler) databasePhases() []phase {
	return []phase{
		{run: r.resizeBudget},
		{run: r.readDatabaseSecret},
		{run: r.adoptDatabase, when: adoptsDatabase},
		{step: "role", run: r.ensureRole},
		{step: "database", run: r.ensureDatabase},
		{step: "secure", run: r.secureDatabase},
		{step: "extensions", run: r.ensureExtensions, when: hasExtensions},
		{step: "databaseSecret", run: r.writeDatabaseSecret},
		{run: r.recordDatabase},
	}
}

// readDatabaseSecret reads the database Secret. Its password is the desired
// one: a person may rotate it by editing the Secret. One that differs from
// what the operator last set is given to the role; one that cannot be used
// changes nothing.
func (r *OrganizationReconciler) readDatabaseSecret(ctx context.Context, s *scope) error {
	secret, err := r.ownedSecret(ctx, s.namespace, naming.DatabaseSecretName(s.org.Name), s)
	if err != nil {
		return err
	}
	s.db.secret = secret
	if secret == nil || string(secret.Data["username"]) != s.role {
		return nil
	}
	password := string(secret.Data["password"])
	if err := checkSecretPassword(password); err != nil {
		return fmt.Errorf("%w: Secret %s/%s: %v; the role keeps its password until the Secret holds a usable one",
			errInvalidSecret, s.namespace, secret.Name, err)
	}
	same, err := credentials.VerifyPassword(secret.Annotations[AnnotationPasswordVerifier], password)
	s.db.password, s.db.edited = password, err != nil || !same
	return nil
}

// ensureRole creates the role or brings it to the spec, giving it a
// password when it needs one.
func (r *OrganizationReconciler) ensureRole(ctx context.Context, s *scope) error {
	if err := r.rolePassword(ctx, s); err != nil {
		return fmt.Errorf("ensuring role %s: %w", s.role, err)
	}
	change, err := s.dbs.EnsureRole(ctx, aurora.RoleSpec{
		Name: s.role, Marker: s.dbMarker(), Verifier: s.db.verifier, ConnLimit: s.maxConnections,
	})
	if err != nil {
		return fmt.Errorf("ensuring role %s: %w", s.role, err)
	}
	s.dbNotes.change(change, "role "+s.role)
	if s.db.edited {
		s.dbNotes.add("set role %s's password to the one in Secret %s/%s", s.role, s.namespace, s.db.secret.Name)
	}
	return nil
}

// rolePassword sets s.db.verifier when the role gets a password now: for a
// new Secret, an edited one, or a role to create. The Secret is written
// after the role. Only a Secret's own password needs a look at the role, to
// learn whether it must be created.
func (r *OrganizationReconciler) rolePassword(ctx context.Context, s *scope) error {
	if s.db.password != "" && !s.db.edited {
		info, err := s.dbs.InspectRole(ctx, s.role)
		if err != nil || info.Exists {
			return err
		}
	}
	if s.db.password == "" {
		password, err := r.Creds.NewPassword()
		if err != nil {
			return err
		}
		s.db.password = password
	}
	verifier, err := r.Creds.Verifier(s.db.password)
	if err != nil {
		return err
	}
	s.db.verifier = verifier
	return nil
}

func (r *OrganizationReconciler) ensureDatabase(ctx context.Context, s *scope) error {
	change, err := s.dbs.EnsureDatabase(ctx, s.database, s.role, s.dbMarker())
	if err != nil {
		return fmt.Errorf("ensuring database %s: %w", s.database, err)
	}
	s.db.changed = change != aurora.Unchanged
	s.dbNotes.change(change, "database "+s.database)
	return nil
}

// secureDatabase checks schema public inside the database when the
// database is new, the spec changed or DatabaseReady is not True. A resync
// of a Ready Organization checks who may connect, and enters the database
// only if PUBLIC still may, as after an interrupted securing. Inside it the
// tenant is the owner: what it changes there reaches no other tenant, who
// cannot connect.
func (r *OrganizationReconciler) secureDatabase(ctx context.Context, s *scope) error {
	inside := s.db.changed || s.org.Status.ObservedGeneration != s.org.Generation ||
		!meta.IsStatusConditionTrue(s.org.Status.Conditions, tenancyv1alpha1.ConditionDatabaseReady)
	secure := s.dbs.SecureDatabaseAccess
	if inside {
		secure = s.dbs.SecureDatabase
	}
	change, err := secure(ctx, s.database, s.role)
	if err != nil {
		return fmt.Errorf("securing database %s: %w", s.database, err)
	}
	if change != aurora.Unchanged {
		s.dbNotes.add("secured database %s: no access for PUBLIC", s.database)
	}
	return nil
}

func hasExtensions(s *scope) bool { return len(s.org.Spec.Database.Extensions) > 0 }

func (r *OrganizationReconciler) ensureExtensions(ctx context.Context, s *scope) error {
	created, err := s.dbs.EnsureExtensions(ctx, s.database, s.extensions())
	if err != nil {
		return fmt.Errorf("ensuring extensions in %s: %w", s.database, err)
	}
	for _, e := range created {
		s.dbNotes.add("created extension %s in database %s", e, s.database)
	}
	return nil
}

func (r *OrganizationReconciler) writeDatabaseSecret(ctx context.Context, s *scope) error {
	data := databaseSecretData(s, s.db.password)
	// The verifier carries a new salt each time, so the Secret keeps the
	// one it has until the role's password changes.
	verifier := s.db.verifier
	if verifier == "" && s.db.secret != nil {
		verifier = s.db.secret.Annotations[AnnotationPasswordVerifier]
	}
	annotations := map[string]string{AnnotationPasswordVerifier: verifier}
	if s.db.adoption != "" {
		annotations[AnnotationAdoption] = s.db.adoption
		if s.db.secret != nil {
			return r.adoptSecret(ctx, s, s.db.secret, data, annotations)
		}
	}
	return r.writeSecret(ctx, s, &s.dbNotes, naming.DatabaseSecretName(s.org.Name), s.db.secret, data, annotations)
}

// recordDatabase reports the provisioned database on the status.
func (r *OrganizationReconciler) recordDatabase(ctx context.Context, s *scope) error {
	s.org.Status.Database = tenancyv1alpha1.DatabaseStatus{
		Cluster:    s.cluster,
		Name:       s.database,
		Host:       s.tenant.Host,
		Port:       int32(s.tenant.Port),
		Role:       s.role,
		SecretName: naming.DatabaseSecretName(s.org.Name),
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Database provisioned", "database", s.database)
	return nil
}

func databaseSecretData(s *scope, password string) map[string][]byte {
	pool := s.org.Spec.Database.Pool
	pool.MaxConnections = s.maxConnections
	pool.MinConnections = min(pool.MinConnections, pool.MaxConnections)
	host, port := s.tenant.Host, strconv.Itoa(s.tenant.Port)
	sslmode := s.tenant.SSLMode
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
