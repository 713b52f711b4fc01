// Copyright 2026 The orgforge Authors.
// SPDX-License-Identifier: Apache-2.0

package controllers

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/placement"
)

func TestSeedCountsEveryRecordedPlacementAndWaitsForEachClustersFirstCheck(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := tenancyv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	dbc := func(name string, capacity int32) *tenancyv1alpha1.DatabaseCluster {
		c := &tenancyv1alpha1.DatabaseCluster{ObjectMeta: metav1.ObjectMeta{Name: name}}
		c.Spec.Capacity.MaxConnections = ptr.To(capacity)
		return c
	}
	org := func(name, annotation, status, budget string) *tenancyv1alpha1.Organization {
		o := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}}
		o.Spec.Database.Pool.MaxConnections = 10
		if annotation != "" {
			o.Annotations[tenancyv1alpha1.AnnotationCluster] = annotation
		}
		if budget != "" {
			o.Annotations[tenancyv1alpha1.AnnotationBudgetedConnections] = budget
		}
		o.Status.Database.Cluster = status
		return o
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		dbc("a", 100), dbc("b", 50),
		org("by-annotation", "a", "", "7"),
		org("by-status", "", "b", ""),
		org("annotation-wins", "a", "b", ""),
		org("unplaced", "", "", ""),
		org("orphaned", "gone", "", "3"),
	).Build()
	l := NewLedger(c)
	if err := l.Seed(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A second seed must not count anything twice.
	if err := l.Seed(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]placement.Usage{}
	for _, cu := range l.Fleet.Clusters() {
		got[cu.Cluster.Name] = cu.Used
		if cu.Cluster.Ready {
			t.Errorf("cluster %s is Ready before any check", cu.Cluster.Name)
		}
	}
	want := map[string]placement.Usage{
		"a":    {Databases: 2, Connections: 17},
		"b":    {Databases: 1, Connections: 10},
		"gone": {Databases: 1, Connections: 3},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("usage after seeding (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "b"}, l.Unchecked([]string{"a", "b"})); diff != "" {
		t.Errorf("clusters waited for (-want +got):\n%s", diff)
	}
	l.MarkChecked("a")
	if diff := cmp.Diff([]string{"b"}, l.Unchecked([]string{"a", "b"})); diff != "" {
		t.Errorf("clusters waited for after a's check (-want +got):\n%s", diff)
	}
}
