package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
)

// dsnParts is what pgx makes of an admin DSN.
type dsnParts struct {
	User, Password, Host, Database string
	Port                           uint16
	SSLMode                        string
}

func parseDSN(t *testing.T, dsn string) dsnParts {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgx cannot parse the DSN: %v", err)
	}
	mode, err := dsnSSLMode(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return dsnParts{User: cfg.User, Password: cfg.Password, Host: cfg.Host, Database: cfg.Database, Port: cfg.Port, SSLMode: mode}
}

func TestAdminDSNKeepsEveryPartWhole(t *testing.T) {
	cases := map[string]struct {
		admin              tenancyv1alpha1.AdminSpec
		username, password string
		want               dsnParts
	}{
		"defaults as the CRD's": {
			admin:    tenancyv1alpha1.AdminSpec{Host: "writer.example.com"},
			username: "orgforge_admin", password: "s3cret",
			want: dsnParts{User: "orgforge_admin", Password: "s3cret", Host: "writer.example.com", Port: 5432, Database: "postgres", SSLMode: "require"},
		},
		"every part set": {
			admin:    tenancyv1alpha1.AdminSpec{Host: "10.0.0.7", Port: 6543, Database: "admin db", SSLMode: "verify-full"},
			username: "admin", password: "pw",
			want: dsnParts{User: "admin", Password: "pw", Host: "10.0.0.7", Port: 6543, Database: "admin db", SSLMode: "verify-full"},
		},
		"a password with URL syntax in it": {
			admin:    tenancyv1alpha1.AdminSpec{Host: "db", SSLMode: "disable"},
			username: "ad@min:x", password: `p@ss:w/o?r#d%20&sslmode=disable 'q' \ ü`,
			want: dsnParts{User: "ad@min:x", Password: `p@ss:w/o?r#d%20&sslmode=disable 'q' \ ü`, Host: "db", Port: 5432, Database: "postgres", SSLMode: "disable"},
		},
		"an IPv6 host": {
			admin:    tenancyv1alpha1.AdminSpec{Host: "fd00::5", Port: 5433},
			username: "a", password: "b",
			want: dsnParts{User: "a", Password: "b", Host: "fd00::5", Port: 5433, Database: "postgres", SSLMode: "require"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := parseDSN(t, adminDSN(tc.admin, tc.username, tc.password))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DSN parsed back (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDSNEndpointReadsHostPortAndSSLModeOfEitherForm(t *testing.T) {
	cases := map[string]struct {
		dsn  string
		want TenantEndpoint
	}{
		"URL":                  {"postgres://u:p@db.example.com:6432/postgres?sslmode=verify-full", TenantEndpoint{Host: "db.example.com", Port: 6432, SSLMode: "verify-full"}},
		"URL without sslmode":  {"postgresql://u:p@db:5432/postgres", TenantEndpoint{Host: "db", Port: 5432, SSLMode: "prefer"}},
		"keyword/value":        {"host=db port=5433 user=u password=p sslmode=disable", TenantEndpoint{Host: "db", Port: 5433, SSLMode: "disable"}},
		"quoted, spaced value": {`host = db  password='a b\'c sslmode=disable'  sslmode = 'require'`, TenantEndpoint{Host: "db", Port: 5432, SSLMode: "require"}},
		"sslmode only inside a quoted password": {
			`host=db password='x sslmode=disable'`, TenantEndpoint{Host: "db", Port: 5432, SSLMode: "prefer"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := dsnEndpoint(tc.dsn)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{"host=db password='s3cret-unclosed", "postgres://u:s3cret@db:notaport/x", "s3cret"} {
		_, err := dsnEndpoint(bad)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("dsnEndpoint(%q) = %v; want an error that does not quote it", bad, err)
		}
	}
}

func TestTenantEndpointTakesEachUnsetFieldFromTheAdmin(t *testing.T) {
	admin := TenantEndpoint{Host: "writer", Port: 5432, SSLMode: "require"}
	cases := map[string]struct {
		spec tenancyv1alpha1.TenantEndpointSpec
		want TenantEndpoint
	}{
		"none set":     {tenancyv1alpha1.TenantEndpointSpec{}, admin},
		"host only":    {tenancyv1alpha1.TenantEndpointSpec{Host: "proxy"}, TenantEndpoint{Host: "proxy", Port: 5432, SSLMode: "require"}},
		"port only":    {tenancyv1alpha1.TenantEndpointSpec{Port: 6432}, TenantEndpoint{Host: "writer", Port: 6432, SSLMode: "require"}},
		"sslmode only": {tenancyv1alpha1.TenantEndpointSpec{SSLMode: "verify-full"}, TenantEndpoint{Host: "writer", Port: 5432, SSLMode: "verify-full"}},
		"all set": {
			tenancyv1alpha1.TenantEndpointSpec{Host: "proxy", Port: 6432, SSLMode: "disable"},
			TenantEndpoint{Host: "proxy", Port: 6432, SSLMode: "disable"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tenantEndpoint(tc.spec, admin)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveAdmin(t *testing.T) {
	const password = "pa55-w0rd"
	secret := func(name string, data map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: name}, Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	ref := func(name string) *tenancyv1alpha1.SecretReference {
		return &tenancyv1alpha1.SecretReference{Namespace: "ops", Name: name}
	}
	flags := FlagsCluster{AdminDSN: "postgres://admin:" + password + "@flags:5432/postgres", Tenant: TenantEndpoint{Host: "tenant-flags", Port: 6432, SSLMode: "verify-ca"}}
	cases := map[string]struct {
		flags  FlagsCluster
		spec   tenancyv1alpha1.DatabaseClusterSpec
		want   TenantEndpoint
		wantDB dsnParts
		// wantErr is the error's message; it must wrap errClusterSpec.
		wantErr string
	}{
		"from flags": {
			flags: flags, spec: tenancyv1alpha1.DatabaseClusterSpec{Admin: tenancyv1alpha1.AdminSpec{FromFlags: true}},
			want:   flags.Tenant,
			wantDB: dsnParts{User: "admin", Password: password, Host: "flags", Port: 5432, Database: "postgres"},
		},
		"from flags, spec.tenant first": {
			flags: flags, spec: tenancyv1alpha1.DatabaseClusterSpec{
				Admin:  tenancyv1alpha1.AdminSpec{FromFlags: true},
				Tenant: tenancyv1alpha1.TenantEndpointSpec{Host: "proxy"},
			},
			want:   TenantEndpoint{Host: "proxy", Port: 6432, SSLMode: "verify-ca"},
			wantDB: dsnParts{User: "admin", Password: password, Host: "flags", Port: 5432, Database: "postgres"},
		},
		"from flags the operator was not given": {
			spec:    tenancyv1alpha1.DatabaseClusterSpec{Admin: tenancyv1alpha1.AdminSpec{FromFlags: true}},
			wantErr: "the admin connection cannot be made: spec.admin.fromFlags is set, and the operator has no admin connection from its --database-* flags",
		},
		"DSN Secret": {
			spec:   tenancyv1alpha1.DatabaseClusterSpec{Admin: tenancyv1alpha1.AdminSpec{DSNSecretRef: ref("dsn")}},
			want:   TenantEndpoint{Host: "db2", Port: 5433, SSLMode: "disable"},
			wantDB: dsnParts{User: "a", Password: password, Host: "db2", Port: 5433, SSLMode: "disable"},
		},
		"DSN Secret missing": {
			spec:    tenancyv1alpha1.DatabaseClusterSpec{Admin: tenancyv1alpha1.AdminSpec{DSNSecretRef: ref("nope")}},
			wantErr: "the admin connection cannot be made: Secret ops/nope was not found",
		},
		"DSN Secret without the key": {
			spec:    tenancyv1alpha1.DatabaseClusterSpec{Admin: tenancyv1alpha1.AdminSpec{DSNSecretRef: ref("creds")}},
			wantErr: `the admin connection cannot be made: Secret ops/creds has no key "dsn", or it is empty`,
		},
		"DSN Secret with no DSN in it": {
			spec:    tenancyv1alpha1.DatabaseClusterSpec{Admin: tenancyv1alpha1.AdminSpec{DSNSecretRef: ref("bad-dsn")}},
			wantErr: `the admin connection cannot be made: key "dsn" of Secret ops/bad-dsn is not a valid PostgreSQL connection string`,
		},
		"host and credentials": {
			spec: tenancyv1alpha1.DatabaseClusterSpec{
				Admin:  tenancyv1alpha1.AdminSpec{Host: "writer", Port: 5432, Database: "postgres", SSLMode: "require", CredentialsSecretRef: ref("creds")},
				Tenant: tenancyv1alpha1.TenantEndpointSpec{Port: 6432},
			},
			want:   TenantEndpoint{Host: "writer", Port: 6432, SSLMode: "require"},
			wantDB: dsnParts{User: "admin@x", Password: password, Host: "writer", Port: 5432, Database: "postgres", SSLMode: "require"},
		},
		"credentials without a password": {
			spec: tenancyv1alpha1.DatabaseClusterSpec{
				Admin: tenancyv1alpha1.AdminSpec{Host: "writer", CredentialsSecretRef: ref("user-only")},
			},
			wantErr: `the admin connection cannot be made: Secret ops/user-only has no key "password", or it is empty`,
		},
	}
	objs := []client.Object{
		secret("dsn", map[string]string{"dsn": "host=db2 port=5433 user=a password=" + password + " sslmode=disable"}),
		secret("creds", map[string]string{"username": "admin@x", "password": password}),
		secret("bad-dsn", map[string]string{"dsn": "postgres://a:" + password + "@db:port/x"}),
		secret("user-only", map[string]string{"username": "admin", "password": ""}),
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := &DatabaseClusterReconciler{APIReader: fakeClient(t, objs...), Flags: tc.flags}
			dbc := &tenancyv1alpha1.DatabaseCluster{Spec: tc.spec}
			got, err := r.resolveAdmin(context.Background(), dbc)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, errClusterSpec) {
					t.Fatalf("error = %v; want %q, wrapping errClusterSpec", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.tenant); diff != "" {
				t.Errorf("tenant endpoint (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantDB, parseDSN(t, got.dsn)); diff != "" {
				t.Errorf("admin DSN (-want +got):\n%s", diff)
			}
		})
	}
}
