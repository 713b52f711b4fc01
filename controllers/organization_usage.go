package controllers

import (
	"context"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
)

// usageJitterShare is the largest share of the usage period by which an
// organization's refresh is put off: a tenth, so that organizations made
// together, whose usage was first read together, drift apart.
const usageJitterShare = 10

// usageJitter is how long after the usage period organization uid's usage
// is read again: fixed for the organization, so that its refreshes stay
// one period and a bit apart, and different between organizations.
func usageJitter(uid string, period time.Duration) time.Duration {
	spread := uint64(period / usageJitterShare)
	if spread == 0 {
		return 0
	}
	return time.Duration(hashUID(uid) % spread)
}

// nextUsage is when the organization's usage is next due; the zero time
// when it was never read.
func nextUsage(org *tenancyv1alpha1.Organization, period time.Duration) time.Time {
	u := org.Status.Usage
	if u == nil || u.UpdatedAt == nil {
		return time.Time{}
	}
	return u.UpdatedAt.Add(period + usageJitter(string(org.UID), period))
}

// refreshUsage reads the organization's usage into its status when it is
// due, and returns when the organization is to be reconciled again: at its
// next drift check (nextCheck), or sooner when its usage falls due before.
// Usage is read only when this reconcile found everything provisioned. A
// read that fails changes nothing on the status, so it is logged, the old
// figures stay, and it is tried again at the next reconcile: at the latest
// at the next drift check. With usage off, figures left from before are
// removed.
func (r *OrganizationReconciler) refreshUsage(ctx context.Context, s *scope) time.Duration {
	resync := nextCheck(string(s.org.UID), time.Now(), r.Settings.ResyncPeriod)
	period := r.Settings.UsagePeriod
	if period <= 0 {
		s.org.Status.Usage = nil
		return resync
	}
	if !s.outcome.succeeded() {
		return resync
	}
	now := time.Now()
	if next := r.nextUsage(s.org, period); now.Before(next) {
		return min(resync, next.Sub(now))
	}
	if err := runPhases(ctx, s, "usage", []phase{{step: "usage", run: r.readUsage}}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Reading usage failed; the status keeps the figures it has, and the next reconcile reads them again",
			"retryIn", resync)
		return resync
	}
	r.usageRead.Store(s.org.UID, s.org.Status.Usage.UpdatedAt.Time)
	return min(resync, period+usageJitter(string(s.org.UID), period))
}

// nextUsage is nextUsage of the Organization, or of the last read this
// process made of its usage while the cache has not yet seen the status
// that read wrote: a reconcile started meanwhile would read it again.
func (r *OrganizationReconciler) nextUsage(org *tenancyv1alpha1.Organization, period time.Duration) time.Time {
	next := nextUsage(org, period)
	v, ok := r.usageRead.Load(org.UID)
	if !ok {
		return next
	}
	read := v.(time.Time)
	if u := org.Status.Usage; u != nil && u.UpdatedAt != nil && !u.UpdatedAt.Time.Before(read) {
		// The cache has caught up: its record is enough.
		r.usageRead.CompareAndDelete(org.UID, v)
		return next
	}
	return read.Add(period + usageJitter(string(org.UID), period))
}

// readUsage reads the database's size and sessions and the prefix's
// objects at once, and records them on the status only when both reads
// succeeded, so that figures of different times never share an updatedAt.
func (r *OrganizationReconciler) readUsage(ctx context.Context, s *scope) error {
	var (
		db             aurora.Usage
		objects, bytes int64
	)
	dbErr, stErr := concurrently(
		func() (err error) {
			db, err = s.dbs.Usage(ctx, s.database, s.role)
			return err
		},
		func() (err error) {
			objects, bytes, err = r.Storage.PrefixUsage(ctx, s.prefix)
			return err
		})
	if dbErr != nil || stErr != nil {
		for _, f := range []struct {
			p   part
			err error
		}{{databasePart, dbErr}, {storagePart, stErr}} {
			if f.err != nil {
				externalErrors.WithLabelValues(f.p.service, string(f.p.classify(f.err))).Inc()
			}
		}
		return errors.Join(dbErr, stErr)
	}
	// The API server keeps whole seconds; so does the status here, so that
	// what is compared next time is what was written.
	at := metav1.NewTime(time.Now().Truncate(time.Second))
	s.org.Status.Usage = &tenancyv1alpha1.UsageStatus{
		DatabaseBytes:   &db.DatabaseBytes,
		StorageObjects:  &objects,
		StorageBytes:    &bytes,
		Connections:     &db.Connections,
		ConnectionLimit: connectionLimit(s),
		UpdatedAt:       &at,
	}
	return nil
}

// connectionLimit is the sum of the CONNECTION LIMITs of the logins that
// may open sessions: during a grace period the previous login keeps a limit
// of its own beside the current one's, so both count, as in the budget.
func connectionLimit(s *scope) int32 {
	if s.db.previous != "" {
		return 2 * s.maxConnections
	}
	return s.maxConnections
}
