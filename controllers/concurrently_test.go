package controllers

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAPanickingPartReportsAFailureWhileTheOtherPartFinishes(t *testing.T) {
	s := &scope{}
	panicking := func() error {
		err := runPhases(context.Background(), s, "database", []phase{{run: func(context.Context, *scope) error {
			var m map[string]int
			m["x"] = 1
			return nil
		}}})
		s.outcome.database = databasePart.result(err, "PostgreSQL at db:5432")
		return err
	}
	var otherDone atomic.Bool
	errA, errB := concurrently(panicking, func() error {
		time.Sleep(20 * time.Millisecond)
		otherDone.Store(true)
		return nil
	})
	if errA == nil || !strings.Contains(errA.Error(), "internal error in the database steps") {
		t.Errorf("the panicking part returned %v; want its panic as an error", errA)
	}
	if errB != nil || !otherDone.Load() {
		t.Errorf("the other part: err %v, finished %v; want nil, true", errB, otherDone.Load())
	}
	if s.outcome.database.done {
		t.Errorf("the panicking part's outcome is %+v; want a failure", s.outcome.database)
	}
}

func TestAPanicInTheCallersPartWaitsForTheOtherPart(t *testing.T) {
	var otherDone atomic.Bool
	func() {
		defer func() { _ = recover() }()
		_, _ = concurrently(func() error {
			time.Sleep(20 * time.Millisecond)
			otherDone.Store(true)
			return nil
		}, func() error { panic("boom") })
	}()
	if !otherDone.Load() {
		t.Error("the panic left concurrently before the other part finished")
	}
}
