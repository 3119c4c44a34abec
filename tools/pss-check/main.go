// pss-check: evaluates every pod template in a stream of Kubernetes manifests (multi-document
// YAML on stdin, e.g. `helm template` output) against a Pod Security Standards level with the
// Kubernetes admission code itself (k8s.io/pod-security-admission/policy), the checks the API
// server's PodSecurity admission runs for `pod-security.kubernetes.io/enforce=<level>`.
//
//	helm template stella deploy/helm/stella | pss-check [-level restricted] [-version latest]
//
// Prints one JSON line per pod template: {"kind","name","allowed","violations":[{"check","reason","detail"}]}
// and exits 1 when any is not allowed, 2 on unreadable input. Kinds with a pod template:
// Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

type violation struct {
	Check  string `json:"check"`
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

type result struct {
	Kind       string      `json:"kind"`
	Name       string      `json:"name"`
	Allowed    bool        `json:"allowed"`
	Violations []violation `json:"violations"`
}

// podOf returns the pod metadata and spec a workload creates, or ok=false for other kinds.
func podOf(kind string, doc []byte) (*metav1.ObjectMeta, *corev1.PodSpec, bool, error) {
	switch kind {
	case "Pod":
		var o corev1.Pod
		err := yaml.UnmarshalStrict(doc, &o)
		return &o.ObjectMeta, &o.Spec, true, err
	case "Deployment":
		var o appsv1.Deployment
		err := yaml.UnmarshalStrict(doc, &o)
		return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, true, err
	case "StatefulSet":
		var o appsv1.StatefulSet
		err := yaml.UnmarshalStrict(doc, &o)
		return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, true, err
	case "DaemonSet":
		var o appsv1.DaemonSet
		err := yaml.UnmarshalStrict(doc, &o)
		return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, true, err
	case "ReplicaSet":
		var o appsv1.ReplicaSet
		err := yaml.UnmarshalStrict(doc, &o)
		return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, true, err
	case "ReplicationController":
		var o corev1.ReplicationController
		err := yaml.UnmarshalStrict(doc, &o)
		if o.Spec.Template == nil {
			return nil, nil, false, err
		}
		return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, true, err
	case "Job":
		var o batchv1.Job
		err := yaml.UnmarshalStrict(doc, &o)
		return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec, true, err
	case "CronJob":
		var o batchv1.CronJob
		err := yaml.UnmarshalStrict(doc, &o)
		return &o.Spec.JobTemplate.Spec.Template.ObjectMeta, &o.Spec.JobTemplate.Spec.Template.Spec, true, err
	}
	return nil, nil, false, nil
}

func main() {
	level := flag.String("level", "restricted", "Pod Security Standards level: privileged, baseline or restricted")
	version := flag.String("version", "latest", "policy version (latest or v1.N)")
	flag.Parse()

	lv, err := api.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pss-check: %v\n", err)
		os.Exit(2)
	}
	ver, err := api.ParseVersion(*version)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pss-check: %v\n", err)
		os.Exit(2)
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pss-check: %v\n", err)
		os.Exit(2)
	}

	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	out := json.NewEncoder(os.Stdout)
	failed, pods := false, 0
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "pss-check: reading the manifests: %v\n", err)
			os.Exit(2)
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			fmt.Fprintf(os.Stderr, "pss-check: a document is not YAML: %v\n", err)
			os.Exit(2)
		}
		meta, spec, ok, err := podOf(head.Kind, doc)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pss-check: %s %s: %v\n", head.Kind, head.Metadata.Name, err)
			os.Exit(2)
		}
		if !ok {
			continue
		}
		pods++
		r := result{Kind: head.Kind, Name: head.Metadata.Name, Allowed: true, Violations: []violation{}}
		for _, c := range evaluator.EvaluatePod(api.LevelVersion{Level: lv, Version: ver}, meta, spec) {
			if !c.Allowed {
				r.Allowed = false
				r.Violations = append(r.Violations, violation{Check: c.ForbiddenReason, Reason: c.ForbiddenReason, Detail: c.ForbiddenDetail})
			}
		}
		if !r.Allowed {
			failed = true
		}
		if err := out.Encode(r); err != nil {
			os.Exit(2)
		}
	}
	fmt.Fprintf(os.Stderr, "pss-check: %d pod templates evaluated at %s:%s\n", pods, lv, ver.String())
	if failed {
		os.Exit(1)
	}
}
