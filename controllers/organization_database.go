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
