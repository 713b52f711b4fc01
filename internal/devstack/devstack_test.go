package devstack

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// startStack starts the parts opts asks for. The test closes the stack
// itself, to check what Close stops, with the func it returns; the stack is
// closed when the test ends in any case.
func startStack(t *testing.T, ctx context.Context, opts Options) (*Stack, func() error) {
	t.Helper()
	st, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	closeStack := sync.OnceValue(st.Close)
	t.Cleanup(func() { _ = closeStack() })
	return st, closeStack
}

// checkAuroraAdmin checks that pg's admin logs in with its password, and
// only with it, and is what an Aurora cluster's master user is: CREATEDB,
// CREATEROLE, a member of rds_superuser, and not a superuser.
func checkAuroraAdmin(t *testing.T, ctx context.Context, pg *Postgres) {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.AdminDSN())
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
	if _, err := pgx.Connect(ctx, pg.DSN(AdminUser, "wrong-password", "postgres")); err == nil {
		t.Error("login with a wrong password succeeded")
	}
}

func TestStackStartsRealServicesAndStopsThemAll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, closeStack := startStack(t, ctx, Options{
		Kube: true, CRDPaths: []string{"../../config/crd/bases"},
		Postgres: true, S3: true,
	})

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
		checkAuroraAdmin(t, ctx, st.Postgres)
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
	if err := closeStack(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, addr := range ports {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			t.Errorf("%s still accepts connections after Close", addr)
		}
	}
}

func TestControllerManagerEndsNamespacesAndCollectsOrphans(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, closeStack := startStack(t, ctx, Options{Kube: true, ControllerManager: true})
	c, err := client.New(st.Kube.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gone := func(t *testing.T, o client.Object) {
		t.Helper()
		for {
			err := c.Get(ctx, client.ObjectKeyFromObject(o), o)
			if apierrors.IsNotFound(err) {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%T %s is still there: %v", o, client.ObjectKeyFromObject(o), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	t.Run("a deleted namespace and what it held are gone", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "content"}}
		for _, o := range []client.Object{ns, cm} {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Delete(ctx, ns); err != nil {
			t.Fatal(err)
		}
		gone(t, ns)
		gone(t, cm)
	})

	t.Run("an object whose owner is deleted is collected, and one whose owner lives is not", func(t *testing.T) {
		mk := func(name string) *corev1.ConfigMap {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
			if err := c.Create(ctx, cm); err != nil {
				t.Fatal(err)
			}
			return cm
		}
		ownedBy := func(name string, owner *corev1.ConfigMap) *corev1.ConfigMap {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
			}}}}
			if err := c.Create(ctx, cm); err != nil {
				t.Fatal(err)
			}
			return cm
		}
		doomed, living := mk("doomed-owner"), mk("living-owner")
		orphan, kept := ownedBy("orphan", doomed), ownedBy("kept", living)
		if err := c.Delete(ctx, doomed); err != nil {
			t.Fatal(err)
		}
		gone(t, orphan)
		// The collector has acted on the graph that holds both; the
		// dependent of a living owner is still there.
		if err := c.Get(ctx, client.ObjectKeyFromObject(kept), kept); err != nil {
			t.Errorf("the dependent of a living owner: %v", err)
		}
	})

	u, err := url.Parse(st.ControllerManager.HealthzURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := closeStack(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		_ = conn.Close()
		t.Errorf("kube-controller-manager still listens on %s after Close", u.Host)
	}
}
