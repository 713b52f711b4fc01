package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
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
	if err := kubeCall(ctx, func(ctx context.Context) error { return f.kube.Patch(ctx, org, finalizer) }); err != nil {
		return fmt.Errorf("adding the finalizer to %s: %w", name, err)
	}
	o, err := newRawOrg(name)
	if err != nil {
		return err
	}
	o.uid = string(org.UID)
	labels := map[string]string{controllers.LabelManagedBy: controllers.ManagedByValue, controllers.LabelOrganization: name}
	namespace := naming.Namespace(name)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: labels}}
	if err := kubeCall(ctx, func(ctx context.Context) error { return f.kube.Create(ctx, ns) }); err != nil {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
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
	if err := kubeCall(ctx, func(ctx context.Context) error { return f.kube.Status().Patch(ctx, org, client.MergeFrom(base)) }); err != nil {
		return fmt.Errorf("writing the status of %s: %w", name, err)
	}
	f.recorder.Eventf(org, nil, corev1.EventTypeNormal, tenancyv1alpha1.ReasonProvisioned, "Reconcile", "%s", strings.Join([]string{
		"Created namespace " + namespace, "created role " + o.role, "created database " + o.database,
		"secured database " + o.database + ": no access for PUBLIC",
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
	if err := kubeCall(ctx, func(ctx context.Context) error { return f.kube.Create(ctx, secret) }); err != nil {
		return fmt.Errorf("creating Secret %s/%s: %w", namespace, name, err)
	}
	return nil
}

// kubeCall bounds one Kubernetes request, as the appliers' are.
func kubeCall(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return fn(ctx)
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
		// Its writes carry the operator's field manager (its binary's
		// name), so that the objects' managed fields have the operator's
		// entries, not one entry merged with the apply's.
		raw: svc, kube: client.WithFieldOwner(e.kube, "manager"), seen: t, recorder: broadcaster.NewRecorder(e.kube.Scheme(), "orgforge"),
		dbHost: e.st.Postgres.Host, dbPort: e.st.Postgres.Port, endpoint: e.st.S3.Endpoint,
	}
	names := orgNames("floor", sc)
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
	wg.Go(func() { applied, applyErrs = applyAll(pctx, e.kube, names, sc.Name+"-floor", o.appliers, t) })
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
	remaining := o.phaseTimeout
	if deadline, ok := pctx.Deadline(); ok {
		remaining = time.Until(deadline)
	}
	missing := t.waitAll(ctx, done, readyMap, remaining)
	p := newPhase(sc.N, applied, t.times(readyMap))
	p.CPUSeconds = takeCPU(0).since(cpu)
	p.Steps = svc.steps.take()
	p.PeakConnections = e.sampler.peakOf(appRaw)
	p.Sessions = e.sampler.sessionsOf(appRaw)
	for _, err := range firstErrors(append(applyErrs, lr.errs...), 5) {
		p.Errors = append(p.Errors, err.Error())
	}
	if apiAfter, err := e.scrapeAPIServer(ctx); err == nil {
		p.APIWritesPerOrg = writesPerOrg(writesDelta(apiWrites(apiBefore), apiWrites(apiAfter)), "POST tenancy.orgforge.io/organizations", sc.N)
	}
	r.Floor = &SideResult{Create: p}
	if len(done) > 0 {
		if r.Floor.Shape, err = shapeOf(ctx, e.kube, done[0]); err != nil {
			r.Floor.Create.Errors = append(r.Floor.Create.Errors, err.Error())
		}
	}
	logf("%s: floor Ready %d/%d in %.1fs (%.1f/s), %.1f API writes/org", sc.label(), p.Completed, sc.N, p.Seconds, p.OrgsPerSecond, p.APIWritesPerOrg)
	if len(missing) > 0 {
		return fmt.Errorf("%d Organizations not Ready after %s, e.g. %s", len(missing), o.phaseTimeout, missing[0])
	}
	// An organization the loop failed is reported with the raw loop's
	// failures (runScenario), as a finding about the services.
	return nil
}

// ObjectShape is what one Ready Organization's objects held, to show that
// the floor writes what orgforge writes.
type ObjectShape struct {
	// Conditions are the status's, as Type=Status/Reason.
	Conditions []string `json:"conditions"`
	// SecretKeys are each Secret's data keys, by the Secret's name less
	// the Organization's.
	SecretKeys map[string][]string `json:"secretKeys"`
	// Bytes are the objects' sizes as JSON, managed fields included:
	// "organization" and each Secret's.
	Bytes map[string]int `json:"bytes"`
}

// shapeOf reads an Organization and its two Secrets.
func shapeOf(ctx context.Context, c client.Client, name string) (*ObjectShape, error) {
	sh := &ObjectShape{SecretKeys: map[string][]string{}, Bytes: map[string]int{}}
	org := &tenancyv1alpha1.Organization{}
	if err := kubeCall(ctx, func(ctx context.Context) error { return c.Get(ctx, client.ObjectKey{Name: name}, org) }); err != nil {
		return nil, fmt.Errorf("reading Organization %s: %w", name, err)
	}
	for _, cond := range org.Status.Conditions {
		sh.Conditions = append(sh.Conditions, fmt.Sprintf("%s=%s/%s", cond.Type, cond.Status, cond.Reason))
	}
	slices.Sort(sh.Conditions)
	b, err := json.Marshal(org)
	if err != nil {
		return nil, err
	}
	sh.Bytes["organization"] = len(b)
	for _, secretName := range []string{naming.DatabaseSecretName(name), naming.StorageSecretName(name)} {
		secret := &corev1.Secret{}
		key := client.ObjectKey{Namespace: naming.Namespace(name), Name: secretName}
		if err := kubeCall(ctx, func(ctx context.Context) error { return c.Get(ctx, key, secret) }); err != nil {
			return nil, fmt.Errorf("reading Secret %s: %w", key, err)
		}
		short := strings.TrimPrefix(secretName, name+"-")
		sh.SecretKeys[short] = slices.Sorted(maps.Keys(secret.Data))
		if b, err = json.Marshal(secret); err != nil {
			return nil, err
		}
		sh.Bytes[short] = len(b)
	}
	return sh, nil
}

// sameShape says how two shapes differ in what they hold, or "" when they
// do not; their sizes are left to the reader.
func sameShape(a, b *ObjectShape) string {
	var diffs []string
	if !slices.Equal(a.Conditions, b.Conditions) {
		diffs = append(diffs, fmt.Sprintf("conditions %v against %v", a.Conditions, b.Conditions))
	}
	for _, k := range sortedKeys(a.SecretKeys) {
		if !slices.Equal(a.SecretKeys[k], b.SecretKeys[k]) {
			diffs = append(diffs, fmt.Sprintf("Secret %s keys %v against %v", k, a.SecretKeys[k], b.SecretKeys[k]))
		}
	}
	for _, k := range sortedKeys(b.SecretKeys) {
		if _, ok := a.SecretKeys[k]; !ok {
			diffs = append(diffs, "Secret "+k+" only on one side")
		}
	}
	return strings.Join(diffs, "; ")
}
