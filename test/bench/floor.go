package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/naming"
)

// sideFloor is the third side of the headline scenario: the raw loop plus
// the Kubernetes writes orgforge makes for an Organization.
const sideFloor = "floor"

// floorLoop is the raw loop with, for each applied Organization, the
// writes orgforge makes, in the same shapes, and nothing of a controller:
// no informer, no cache, no work queue. Its steps run one after another,
// as the raw loop's do, so its throughput over raw's is what those writes
// cost on this machine. orgforge's over its is what the controller costs
// beyond the writes, less what running the database and the storage parts
// at once gains it.
type floorLoop struct {
	raw      *rawServices
	kube     client.Client
	seen     *tracker
	recorder events.EventRecorder
	// Written to the Secrets, as the operator writes its settings.
	dbHost   string
	dbPort   int
	endpoint string
}

// provision is one Organization: the finalizer (as soon as the apply has
// made it), the namespace, the database and its Secret, the storage and its
// Secret, the status, and the Event saying what was made.
func (f *floorLoop) provision(ctx context.Context, name string) error {
	org := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name}}
	// The apply runs beside the loop: wait until the watch has seen it.
	if err := f.seen.waitSeen(ctx, name); err != nil {
		return err
	}
	finalizer := client.RawPatch(types.MergePatchType,
		[]byte(`{"metadata":{"finalizers":["`+tenancyv1alpha1.FinalizerName+`"]}}`))
	if err := f.kube.Patch(ctx, org, finalizer); err != nil {
		return fmt.Errorf("finalizer: %w", err)
	}
	o, err := newRawOrg(name)
	if err != nil {
		return err
	}
	o.uid = string(org.UID)
	labels := map[string]string{controllers.LabelManagedBy: controllers.ManagedByValue, controllers.LabelOrganization: name}
	namespace := naming.Namespace(name)
	if err := f.kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: labels}}); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}

	password, err := f.raw.provisionDatabase(ctx, o)
	if err != nil {
		return err
	}
	if err := f.writeSecret(ctx, org, namespace, naming.DatabaseSecretName(name), labels, f.databaseSecretData(o, password, org.Spec.Database.Pool)); err != nil {
		return err
	}
	key, err := f.raw.provisionStorage(ctx, o)
	if err != nil {
		return err
	}
	bucket, region := f.raw.st.Bucket(), f.raw.st.Region()
	if err := f.writeSecret(ctx, org, namespace, naming.StorageSecretName(name), labels, map[string][]byte{
		"bucket": []byte(bucket), "prefix": []byte(o.prefix), "region": []byte(region), "endpoint": []byte(f.endpoint),
		"access-key-id": []byte(key.ID), "secret-access-key": []byte(key.Secret),
	}); err != nil {
		return err
	}

	base := org.DeepCopy()
	f.setReadyStatus(org, o, namespace)
	if err := f.kube.Status().Patch(ctx, org, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	f.recorder.Eventf(org, nil, corev1.EventTypeNormal, tenancyv1alpha1.ReasonProvisioned, "Reconcile", "%s", strings.Join([]string{
		"Created namespace " + namespace, "created role " + o.role, "created database " + o.database,
		"secured database " + o.database + ": no access for PUBLIC, schema public for " + o.role,
		"wrote Secret " + namespace + "/" + naming.DatabaseSecretName(name),
		"created prefix s3://" + bucket + "/" + o.prefix,
		"created IAM user " + f.raw.st.UserName(name) + " with access to prefix " + o.prefix + " only",
		"issued access key " + key.ID + " for prefix " + o.prefix,
		"wrote Secret " + namespace + "/" + naming.StorageSecretName(name),
	}, "; "))
	return nil
}

func (f *floorLoop) writeSecret(ctx context.Context, org *tenancyv1alpha1.Organization, namespace, name string, labels map[string]string, data map[string][]byte) error {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	if err := controllerutil.SetControllerReference(org, secret, f.kube.Scheme()); err != nil {
		return err
	}
	if err := f.kube.Create(ctx, secret); err != nil {
		return fmt.Errorf("Secret %s/%s: %w", namespace, name, err)
	}
	return nil
}

// databaseSecretData holds the keys the operator's database Secret holds.
func (f *floorLoop) databaseSecretData(o rawOrg, password string, pool tenancyv1alpha1.PoolSpec) map[string][]byte {
	hostPort := net.JoinHostPort(f.dbHost, strconv.Itoa(f.dbPort))
	q := url.Values{}
	q.Set("sslmode", "disable")
	q.Set("pool_min_conns", strconv.Itoa(int(pool.MinConnections)))
	q.Set("pool_max_conns", strconv.Itoa(int(pool.MaxConnections)))
	uri := url.URL{Scheme: "postgresql", User: url.UserPassword(o.role, password), Host: hostPort, Path: "/" + o.database, RawQuery: q.Encode()}
	return map[string][]byte{
		"host": []byte(f.dbHost), "port": []byte(strconv.Itoa(f.dbPort)), "dbname": []byte(o.database),
		"username": []byte(o.role), "password": []byte(password), "sslmode": []byte("disable"),
		"uri": []byte(uri.String()), "jdbc-url": []byte("jdbc:postgresql://" + hostPort + "/" + o.database + "?sslmode=disable"),
		"pool-min-size": []byte(strconv.Itoa(int(pool.MinConnections))), "pool-max-size": []byte(strconv.Itoa(int(pool.MaxConnections))),
	}
}

// setReadyStatus fills the status the operator writes for a Ready
// Organization.
func (f *floorLoop) setReadyStatus(org *tenancyv1alpha1.Organization, o rawOrg, namespace string) {
	gen := org.Generation
	for _, c := range []metav1.Condition{
		{Type: tenancyv1alpha1.ConditionDatabaseReady, Message: "Database, role and Secret are provisioned"},
		{Type: tenancyv1alpha1.ConditionStorageReady, Message: "Prefix, access and Secret are provisioned"},
		{Type: tenancyv1alpha1.ConditionReady, Message: "Organization is provisioned"},
	} {
		c.Status, c.Reason, c.ObservedGeneration = metav1.ConditionTrue, tenancyv1alpha1.ReasonProvisioned, gen
		meta.SetStatusCondition(&org.Status.Conditions, c)
	}
	bucket := f.raw.st.Bucket()
	org.Status.ObservedGeneration = gen
	org.Status.Namespace = namespace
	org.Status.Database = tenancyv1alpha1.DatabaseStatus{
		Name: o.database, Host: f.dbHost, Port: int32(f.dbPort), Role: o.role, SecretName: naming.DatabaseSecretName(o.name),
	}
	org.Status.Storage = tenancyv1alpha1.StorageStatus{
		Bucket: bucket, Prefix: o.prefix, URL: "s3://" + bucket + "/" + o.prefix, SecretName: naming.StorageSecretName(o.name),
	}
}

// runFloorSide applies the N Organizations, as the orgforge side does, and
// runs the floor loop over them with as many workers as the operator has
// reconcilers; the phase ends when the last is seen Ready.
func runFloorSide(ctx context.Context, o *options, sc scenario, r *ScenarioResult, res *Results) error {
	e, svc, err := startLoopStack(ctx, o, sc, sideFloor, res)
	if err != nil {
		return err
	}
	defer func() { svc.close(); _ = e.close() }()
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: e.clientset.EventsV1()})
	bctx, stopEvents := context.WithCancel(ctx)
	broadcaster.StartRecordingToSink(bctx.Done())
	defer func() { stopEvents(); broadcaster.Shutdown() }()
	tctx, stopTracker := context.WithCancel(ctx)
	t := startTracker(tctx, e.kube, sc.Name+"-floor")
	defer func() { stopTracker(); <-t.done }()
	f := &floorLoop{
		raw: svc, kube: e.kube, seen: t, recorder: broadcaster.NewRecorder(e.kube.Scheme(), "orgforge"),
		dbHost: e.st.Postgres.Host, dbPort: e.st.Postgres.Port, endpoint: e.st.S3.Endpoint,
	}
	names := make([]string, sc.N)
	for i := range names {
		names[i] = fmt.Sprintf("floor-%s-%04d", sc.Name, i)
	}
	apiBefore, err := e.scrapeAPIServer(ctx)
	if err != nil {
		return fmt.Errorf("apiserver metrics: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, o.phaseTimeout)
	defer cancel()
	e.sampler.reset()
	svc.steps.take()
	logf("%s: floor create, applying %d Organizations beside a loop of %d workers", sc.label(), sc.N, sc.Concurrency)
	cpu := takeCPU(0)
	var applied map[string]time.Time
	var applyErrs []error
	var wg sync.WaitGroup
	wg.Go(func() { applied, applyErrs = applyAll(pctx, e.kube, names, sc.Name+"-floor", o.appliers) })
	lr := workerLoop(pctx, sc.N, sc.Concurrency, func(ctx context.Context, i int) error { return f.provision(ctx, names[i]) })
	wg.Wait()
	// The loop wrote the status of the ones it finished; the watch has yet
	// to see the last few. One that failed will never be Ready.
	var done []string
	for i, end := range lr.ends {
		if !end.IsZero() {
			done = append(done, names[i])
		}
	}
	missing := t.waitAll(ctx, done, readyMap, o.phaseTimeout)
	p := newPhase(sc.N, applied, t.times(readyMap))
	p.CPUSeconds = takeCPU(0).since(cpu)
	p.Steps = svc.steps.take()
	p.PeakConnections = e.sampler.peakOf(appRaw)
	p.Sessions = e.sampler.sessionsOf(appRaw)
	for _, err := range firstErrors(append(applyErrs, lr.errs...), 5) {
		p.Errors = append(p.Errors, err.Error())
	}
	if apiAfter, err := e.scrapeAPIServer(ctx); err == nil {
		writes := writesDelta(apiWrites(apiBefore), apiWrites(apiAfter))
		others, _ := splitHeartbeat(writes)
		p.APIWritesPerOrg = round(float64(others-writes["POST tenancy.orgforge.io/organizations"])/float64(sc.N), 2)
	}
	r.Floor = &SideResult{Create: p}
	logf("%s: floor Ready %d/%d in %.1fs (%.1f/s), %.1f API writes/org", sc.label(), p.Completed, sc.N, p.Seconds, p.OrgsPerSecond, p.APIWritesPerOrg)
	if len(missing) > 0 {
		return fmt.Errorf("%d Organizations not Ready after %s, e.g. %s", len(missing), o.phaseTimeout, missing[0])
	}
	if p.Completed < sc.N {
		return fmt.Errorf("only %d of %d Organizations completed: %s", p.Completed, sc.N, strings.Join(p.Errors, "; "))
	}
	return nil
}
