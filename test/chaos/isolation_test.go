package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orgforge/orgforge/internal/naming"
)

// insufficientPrivilege is PostgreSQL's refusal for lack of rights,
// SQLSTATE 42501.
func insufficientPrivilege(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}

func accessDenied(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "AccessDenied"
}

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
	cleanupOrgs(t, tenants)
	for _, n := range tenants {
		create(t, newOrg(n))
	}
	waitReady(t, tenants, env.scale.converge)
	verifyProvisioned(t, "iso", tenants)
	sum.orgs(len(tenants), 0)

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
		if err := putObject(ctx, env.stack.S3.RootClient(), ts[n].prefix+"secret.txt", "property of "+n); err != nil {
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
				attempt(t, "logging into "+to+"'s database", insufficientPrivilege(err), err)

				c := ts[from].s3
				key := ts[to].prefix + "secret.txt"
				_, err = getObject(ctx, c, key)
				attempt(t, "S3 Get of "+key, accessDenied(err), err)
				err = putObject(ctx, c, ts[to].prefix+"planted.txt", "from "+from)
				attempt(t, "S3 Put under "+ts[to].prefix, accessDenied(err), err)
				_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket, Prefix: aws.String(ts[to].prefix)})
				attempt(t, "S3 List of "+ts[to].prefix, accessDenied(err), err)
				_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket, Key: aws.String(key)})
				attempt(t, "S3 Delete of "+key, accessDenied(err), err)
				if body, err := getObject(ctx, env.stack.S3.RootClient(), key); err != nil || body != "property of "+to {
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
				attempt(t, stmt, insufficientPrivilege(err), err)
			}
		})
	}

	deleteOrgs(t, tenants...)
	waitGone(t, tenants, env.scale.converge)
	verifyGone(t, "iso", tenants)
	sum.orgs(0, len(tenants))
}
