package devstack

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestStackStartsRealServicesAndStopsThemAll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := Start(ctx, Options{
		Kube: true, CRDPaths: []string{"../../config/crd/bases"},
		Postgres: true, S3: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = st.Close()
		}
	}()

	t.Run("apiserver serves the Organization CRD", func(t *testing.T) {
		scheme := runtime.NewScheme()
		if err := apiextensionsv1.AddToScheme(scheme); err != nil {
			t.Fatal(err)
		}
		c, err := client.New(st.Kube.Config, client.Options{Scheme: scheme})
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := c.Get(ctx, client.ObjectKey{Name: "organizations.tenancy.orgforge.io"}, &crd); err != nil {
			t.Fatalf("CRD not installed: %v", err)
		}
		if crd.Spec.Scope != apiextensionsv1.ClusterScoped {
			t.Errorf("scope = %s, want Cluster", crd.Spec.Scope)
		}
	})

	t.Run("admin is Aurora-like: CREATEDB, CREATEROLE, rds_superuser, not superuser", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, st.Postgres.AdminDSN())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close(ctx) }()
		var super, createdb, createrole, member bool
		err = conn.QueryRow(ctx, `SELECT rolsuper, rolcreatedb, rolcreaterole, pg_has_role(current_user, 'rds_superuser', 'MEMBER')
			FROM pg_roles WHERE rolname = current_user`).Scan(&super, &createdb, &createrole, &member)
		if err != nil {
			t.Fatal(err)
		}
		if super || !createdb || !createrole || !member {
			t.Errorf("super=%v createdb=%v createrole=%v rds_superuser=%v; want false true true true", super, createdb, createrole, member)
		}
		if _, err := pgx.Connect(ctx, st.Postgres.DSN(AdminUser, "wrong-password", "postgres")); err == nil {
			t.Error("login with a wrong password succeeded")
		}
	})

	t.Run("tenants bucket exists and root can write to it", func(t *testing.T) {
		c := st.S3.RootClient()
		if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(st.S3.Bucket)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.S3.Bucket), Key: aws.String("probe")}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("postgres restarts with its data after Stop", func(t *testing.T) {
		if err := st.Postgres.Stop(); err != nil {
			t.Fatal(err)
		}
		if _, err := pgx.Connect(ctx, st.Postgres.AdminDSN()); err == nil {
			t.Fatal("connected to a stopped server")
		}
		if err := st.Postgres.Start(ctx); err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, st.Postgres.AdminDSN())
		if err != nil {
			t.Fatalf("admin login after restart: %v", err)
		}
		_ = conn.Close(ctx)
	})

	ports := []string{
		fmt.Sprintf("127.0.0.1:%d", st.Postgres.Port),
		st.S3.Endpoint[len("http://"):],
		st.S3.IAMEndpoint[len("http://"):],
		st.Kube.Config.Host[len("https://"):],
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	for _, addr := range ports {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			t.Errorf("%s still accepts connections after Close", addr)
		}
	}
}
