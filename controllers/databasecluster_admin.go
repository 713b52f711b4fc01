package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// errClusterSpec marks a DatabaseCluster whose admin connection cannot be
// made from its spec and Secrets: a Secret or key that is missing, or a
// connection string that does not parse. Only a person can fix it. Its
// message names Secrets and keys, never what they hold.
var errClusterSpec = errors.New("the admin connection cannot be made")

// Defaults of an admin endpoint given by parts, as the CRD defaults them.
const (
	defaultAdminPort     = 5432
	defaultAdminDatabase = "postgres"
	defaultAdminSSLMode  = "require"
	// libpqSSLMode is libpq's (and pgx's) sslmode when a connection string
	// says none.
	libpqSSLMode = "prefer"
)

// Keys of the Secrets a DatabaseCluster's admin spec names.
const (
	secretKeyDSN      = "dsn"
	secretKeyUsername = "username"
	secretKeyPassword = "password"
)

// adminAccess is how the operator reaches a cluster, and what tenants are
// told of it.
type adminAccess struct {
	// dsn is a secret: it goes to aurora.Config and nowhere else.
	dsn    string
	tenant TenantEndpoint
}

// resolveAdmin makes the cluster's admin DSN from its spec, the operator's
// flags or the Secrets the spec names, and its tenant endpoint: spec.tenant,
// each field defaulting to the admin endpoint's. Secrets are read with the
// APIReader, since the cache holds only the operator's own. An error
// wrapping errClusterSpec needs a person; any other is Kubernetes'.
func (r *DatabaseClusterReconciler) resolveAdmin(ctx context.Context, dbc *tenancyv1alpha1.DatabaseCluster) (adminAccess, error) {
	admin := dbc.Spec.Admin
	switch {
	case admin.FromFlags:
		if r.Flags.AdminDSN == "" {
			return adminAccess{}, fmt.Errorf("%w: spec.admin.fromFlags is set, and the operator has no admin connection from its --database-* flags", errClusterSpec)
		}
		return adminAccess{dsn: r.Flags.AdminDSN, tenant: tenantEndpoint(dbc.Spec.Tenant, r.Flags.Tenant)}, nil
	case admin.DSNSecretRef != nil:
		v, err := r.secretValues(ctx, *admin.DSNSecretRef, secretKeyDSN)
		if err != nil {
			return adminAccess{}, err
		}
		dsn := v[secretKeyDSN]
		endpoint, err := dsnEndpoint(dsn)
		if err != nil {
			return adminAccess{}, fmt.Errorf("%w: key %q of Secret %s is not a valid PostgreSQL connection string",
				errClusterSpec, secretKeyDSN, secretName(*admin.DSNSecretRef))
		}
		return adminAccess{dsn: dsn, tenant: tenantEndpoint(dbc.Spec.Tenant, endpoint)}, nil
	case admin.Host != "" && admin.CredentialsSecretRef != nil:
		v, err := r.secretValues(ctx, *admin.CredentialsSecretRef, secretKeyUsername, secretKeyPassword)
		if err != nil {
			return adminAccess{}, err
		}
		return adminAccess{
			dsn:    adminDSN(admin, v[secretKeyUsername], v[secretKeyPassword]),
			tenant: tenantEndpoint(dbc.Spec.Tenant, partsEndpoint(admin)),
		}, nil
	}
	// Admission refuses this; a spec written before the rule was, is not.
	return adminAccess{}, fmt.Errorf("%w: set exactly one of spec.admin.fromFlags, spec.admin.dsnSecretRef, and spec.admin.host with spec.admin.credentialsSecretRef", errClusterSpec)
}

// secretValues reads keys of Secret ref, each present and not empty.
func (r *DatabaseClusterReconciler) secretValues(ctx context.Context, ref tenancyv1alpha1.SecretReference, keys ...string) (map[string]string, error) {
	var secret corev1.Secret
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: Secret %s was not found", errClusterSpec, secretName(ref))
		}
		return nil, fmt.Errorf("reading Secret %s: %w", secretName(ref), err)
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		v := secret.Data[k]
		if len(v) == 0 {
			return nil, fmt.Errorf("%w: Secret %s has no key %q, or it is empty", errClusterSpec, secretName(ref), k)
		}
		out[k] = string(v)
	}
	return out, nil
}

func secretName(ref tenancyv1alpha1.SecretReference) string { return ref.Namespace + "/" + ref.Name }

// adminDSN is the URL connection string of an admin endpoint given by
// parts. Every part is escaped, so that a password with @, / or ? stays
// one password.
func adminDSN(admin tenancyv1alpha1.AdminSpec, username, password string) string {
	e := partsEndpoint(admin)
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(username, password),
		Host:     net.JoinHostPort(e.Host, strconv.Itoa(e.Port)),
		Path:     "/" + orDefault(admin.Database, defaultAdminDatabase),
		RawQuery: url.Values{"sslmode": {e.SSLMode}}.Encode(),
	}
	return u.String()
}

// partsEndpoint is an admin endpoint given by parts, defaulted as the CRD
// does.
func partsEndpoint(admin tenancyv1alpha1.AdminSpec) TenantEndpoint {
	port := int(admin.Port)
	if port == 0 {
		port = defaultAdminPort
	}
	return TenantEndpoint{Host: admin.Host, Port: port, SSLMode: orDefault(admin.SSLMode, defaultAdminSSLMode)}
}

// dsnEndpoint reads the host, port and sslmode of a connection string, URL
// or keyword/value. Its error never holds the string, which pgconn's may.
func dsnEndpoint(dsn string) (TenantEndpoint, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return TenantEndpoint{}, errClusterSpec
	}
	mode, err := dsnSSLMode(dsn)
	if err != nil {
		return TenantEndpoint{}, errClusterSpec
	}
	return TenantEndpoint{Host: cfg.Host, Port: int(cfg.Port), SSLMode: orDefault(mode, libpqSSLMode)}, nil
}

// dsnSSLMode reads the sslmode a connection string sets, "" when none;
// pgconn parses it only into a TLS configuration.
func dsnSSLMode(dsn string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		return u.Query().Get("sslmode"), nil
	}
	settings, err := keywordValues(dsn)
	return settings["sslmode"], err
}

// keywordValues parses libpq's keyword/value form: keyword = value pairs
// apart by spaces, a value single-quoted when it holds spaces, with \' and
// \\ as escapes.
func keywordValues(s string) (map[string]string, error) {
	out := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t\n\r\f\v")
		if s == "" {
			return out, nil
		}
		key, rest, ok := strings.Cut(s, "=")
		if !ok {
			return nil, errClusterSpec
		}
		key = strings.TrimSpace(key)
		s = strings.TrimLeft(rest, " \t\n\r\f\v")
		quoted := strings.HasPrefix(s, "'")
		if quoted {
			s = s[1:]
		}
		var v strings.Builder
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				v.WriteByte(s[i])
				continue
			}
			if (quoted && c == '\'') || (!quoted && strings.IndexByte(" \t\n\r\f\v", c) >= 0) {
				break
			}
			v.WriteByte(c)
		}
		if quoted {
			if i == len(s) {
				return nil, errClusterSpec
			}
			i++ // the closing quote
		}
		out[key] = v.String()
		s = s[i:]
	}
}

// tenantEndpoint is spec.tenant, each field that is unset taken from admin:
// the admin endpoint, or for admin.fromFlags the operator's
// --tenant-database-* settings.
func tenantEndpoint(spec tenancyv1alpha1.TenantEndpointSpec, admin TenantEndpoint) TenantEndpoint {
	e := admin
	if spec.Host != "" {
		e.Host = spec.Host
	}
	if spec.Port != 0 {
		e.Port = int(spec.Port)
	}
	if spec.SSLMode != "" {
		e.SSLMode = spec.SSLMode
	}
	return e
}
