package chaos_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/testutil"
)

// connString is a database Secret's uri for one connection to db: without
// the pool settings, which only pgxpool understands.
func connString(uri, db string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	q := u.Query()
	q.Del("pool_min_conns")
	q.Del("pool_max_conns")
	u.RawQuery = q.Encode()
	u.Path = "/" + db
	return u.String()
}

// TestTenantIsolationMatrix provisions five organizations and, for every
// ordered pair, has the first try the second's database and prefix: login,
// S3 Get, Put, List and Delete are all denied. Each org's role may create
// neither roles nor databases.
func TestTenantIsolationMatrix(t *testing.T) {
	ctx := t.Context()
	op := startOperator(t, "isolation")
	op.waitStarted(t)
	tenants := names("iso", 5)
	var created []*tenancyv1alpha1.Organization
	for _, n := range tenants {
		created = append(created, newOrg(n))
	}
	provision(t, created, group{"iso", tenants})

	type tenant struct {
		uri, prefix string
		s3          *s3.Client
	}
	ts := map[string]tenant{}
	all, err := orgs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range tenants {
		ds, err := getSecret(ctx, all[n], n+"-database")
		if err != nil {
			t.Fatal(err)
		}
		ss, err := getSecret(ctx, all[n], n+"-storage")
		if err != nil {
			t.Fatal(err)
		}
		ts[n] = tenant{uri: string(ds.Data["uri"]), prefix: string(ss.Data["prefix"]),
			s3: env.stack.S3.Client(string(ss.Data["access-key-id"]), string(ss.Data["secret-access-key"]))}
		// Something of each tenant's to steal or spoil.
		if err := testutil.PutObject(ctx, env.stack.S3.RootClient(), env.stack.S3.Bucket, ts[n].prefix+"secret.txt", "property of "+n); err != nil {
			t.Fatal(err)
		}
	}

	attempt := func(t *testing.T, what string, denied bool, err error) {
		t.Helper()
		sum.mu.Lock()
		sum.isolation.pairs++
		if denied {
			sum.isolation.denied++
		}
		sum.mu.Unlock()
		if !denied {
			t.Errorf("%s was not denied (err %v)", what, err)
		}
	}
	bucket := aws.String(env.stack.S3.Bucket)
	for _, from := range tenants {
		for _, to := range tenants {
			if from == to {
				continue
			}
			t.Run(from+" to "+to, func(t *testing.T) {
				conn, err := pgx.Connect(ctx, connString(ts[from].uri, naming.DatabaseName(to)))
				if err == nil {
					_ = conn.Close(ctx)
				}
				attempt(t, "logging into "+to+"'s database", testutil.IsInsufficientPrivilege(err), err)

				c := ts[from].s3
				key := ts[to].prefix + "secret.txt"
				_, err = testutil.GetObject(ctx, c, env.stack.S3.Bucket, key)
				attempt(t, "S3 Get of "+key, testutil.IsAccessDenied(err), err)
				err = testutil.PutObject(ctx, c, env.stack.S3.Bucket, ts[to].prefix+"planted.txt", "from "+from)
				attempt(t, "S3 Put under "+ts[to].prefix, testutil.IsAccessDenied(err), err)
				_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket, Prefix: aws.String(ts[to].prefix)})
				attempt(t, "S3 List of "+ts[to].prefix, testutil.IsAccessDenied(err), err)
				_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket, Key: aws.String(key)})
				attempt(t, "S3 Delete of "+key, testutil.IsAccessDenied(err), err)
				if body, err := testutil.GetObject(ctx, env.stack.S3.RootClient(), env.stack.S3.Bucket, key); err != nil || body != "property of "+to {
					t.Errorf("%s's object after %s's attempts: %q, %v", to, from, body, err)
				}
			})
		}
	}
	for _, n := range tenants {
		t.Run(n+" creates no roles or databases", func(t *testing.T) {
			conn, err := pgx.Connect(ctx, connString(ts[n].uri, naming.DatabaseName(n)))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close(context.Background()) }()
			for _, stmt := range []string{
				"CREATE ROLE " + n[:3] + "_escalated LOGIN SUPERUSER",
				"CREATE ROLE " + n[:3] + "_plain",
				"CREATE DATABASE " + n[:3] + "_sneaky",
				"ALTER ROLE CURRENT_USER CREATEDB",
				"ALTER ROLE CURRENT_USER CONNECTION LIMIT -1",
				fmt.Sprintf("COMMENT ON ROLE %s IS 'orgforge:org=%s;uid=stolen'", naming.RoleName(n), n),
				fmt.Sprintf("GRANT %s TO %s", naming.RoleName(n), naming.RoleName(tenants[(slices.Index(tenants, n)+1)%len(tenants)])),
			} {
				_, err := conn.Exec(ctx, stmt)
				attempt(t, stmt, testutil.IsInsufficientPrivilege(err), err)
			}
		})
	}

	deleteAndVerifyGone(t, nil, group{"iso", tenants})
}
