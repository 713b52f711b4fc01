// Copyright 2026 The orgforge Authors.
// SPDX-License-Identifier: Apache-2.0

// Package v1alpha1 contains the v1alpha1 API of the tenancy.orgforge.io group.
// +kubebuilder:object:generate=true
// +groupName=tenancy.orgforge.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "tenancy.orgforge.io", Version: "v1alpha1"}

	// SchemeBuilder adds the types of this group-version to a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
