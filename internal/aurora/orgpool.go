package aurora

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
)

// errClosed is returned by OrgPool after Close.
var errClosed = errors.New("aurora service is closed")

// orgPools is a bounded LRU of one-connection pools, one per tenant database.
// It never holds more than slots pools, counting the ones still closing, so
// that with one connection each the org pools never hold more than slots
// connections, whatever the number of databases.
type orgPools struct {
	slots int
	// newPool builds a pool for a database; it must not connect.
	newPool func(db string) (*pgxpool.Pool, error)

	mu    sync.Mutex
	pools map[string]*orgPool
	// idle holds the pools nobody holds, most recently released first; only
	// those may be evicted.
	idle *list.List
	// closing counts pools taken out of pools whose connections may still
	// be open: they keep their slot until closed.
	closing int
	// changed is closed, and replaced, whenever a pool is released or a slot
	// frees up, to wake the callers waiting for one.
	changed chan struct{}
	closed  bool
}

type orgPool struct {
	db   string
	pool *pgxpool.Pool
	refs int
	// elem is the pool's place in idle while refs is zero.
	elem *list.Element
	// doomed pools were forgotten while held; the last release closes them.
	doomed bool
}

func newOrgPools(slots int, newPool func(string) (*pgxpool.Pool, error)) *orgPools {
	return &orgPools{
		slots:   slots,
		newPool: newPool,
		pools:   map[string]*orgPool{},
		idle:    list.New(),
		changed: make(chan struct{}),
	}
}

// broadcast wakes every waiter; the caller holds mu.
func (o *orgPools) broadcast() {
	close(o.changed)
	o.changed = make(chan struct{})
}

// acquire returns the pool of db and a func that releases the caller's hold
// on it. When every slot is held it waits, until a pool is released or ctx
// ends.
func (o *orgPools) acquire(ctx context.Context, db string) (*pgxpool.Pool, func(), error) {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return nil, nil, errClosed
		}
		if p, ok := o.pools[db]; ok {
			o.hold(p)
			o.mu.Unlock()
			return p.pool, o.releaser(p), nil
		}
		if len(o.pools)+o.closing < o.slots {
			pool, err := o.newPool(db)
			if err != nil {
				o.mu.Unlock()
				return nil, nil, err
			}
			p := &orgPool{db: db, pool: pool}
			o.pools[db] = p
			o.hold(p)
			o.mu.Unlock()
			return p.pool, o.releaser(p), nil
		}
		if back := o.idle.Back(); back != nil {
			victim := back.Value.(*orgPool)
			o.idle.Remove(back)
			victim.elem = nil
			delete(o.pools, victim.db)
			o.closing++
			o.mu.Unlock()
			// Closing outside the lock: it waits for the connection to end,
			// and the slot stays counted in closing until then.
			o.closeCounted(victim)
			continue
		}
		wait := o.changed
		o.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("waiting for a free connection to database %q: %w", db, ctx.Err())
		}
	}
}

// hold counts a new holder of p; the caller holds mu.
func (o *orgPools) hold(p *orgPool) {
	p.refs++
	if p.elem != nil {
		o.idle.Remove(p.elem)
		p.elem = nil
	}
}

func (o *orgPools) releaser(p *orgPool) func() {
	var once sync.Once
	return func() { once.Do(func() { o.release(p) }) }
}

func (o *orgPools) release(p *orgPool) {
	o.mu.Lock()
	p.refs--
	if p.refs > 0 {
		o.mu.Unlock()
		return
	}
	if p.doomed {
		o.mu.Unlock()
		o.closeCounted(p)
		return
	}
	p.elem = o.idle.PushFront(p)
	o.broadcast()
	o.mu.Unlock()
}

// closeCounted closes a pool already counted in closing and frees its slot.
func (o *orgPools) closeCounted(p *orgPool) {
	p.pool.Close()
	o.mu.Lock()
	o.closing--
	o.broadcast()
	o.mu.Unlock()
}

// forget closes the pool of db, at once when nobody holds it, or else when
// its last holder releases it. Later calls to acquire build a new pool.
func (o *orgPools) forget(db string) {
	o.mu.Lock()
	p, ok := o.pools[db]
	if !ok {
		o.mu.Unlock()
		return
	}
	delete(o.pools, db)
	o.closing++
	if p.refs > 0 {
		p.doomed = true
		o.mu.Unlock()
		return
	}
	o.idle.Remove(p.elem)
	p.elem = nil
	o.mu.Unlock()
	o.closeCounted(p)
}

// close closes every pool. Pools still held close when released.
func (o *orgPools) close() {
	o.mu.Lock()
	o.closed = true
	dbs := make([]string, 0, len(o.pools))
	for db := range o.pools {
		dbs = append(dbs, db)
	}
	o.broadcast()
	o.mu.Unlock()
	for _, db := range dbs {
		o.forget(db)
	}
}

// size returns the number of pools, open or closing, for tests.
func (o *orgPools) size() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pools) + o.closing
}

// OpenConnections is the number of connections the service holds now: its
// admin pool's and its tenant databases' pools', at most
// Config.MaxConnections. A tenant pool still closing counts as one, since
// its connection may not have ended yet.
func (s *Service) OpenConnections() int32 {
	return s.admin.Stat().TotalConns() + s.orgs.openConns()
}

// openConns counts the pools' connections, a closing pool as one.
func (o *orgPools) openConns() int32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := int32(o.closing)
	for _, p := range o.pools {
		n += p.pool.Stat().TotalConns()
	}
	return n
}
