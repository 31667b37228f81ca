// k8svalidate strictly decodes rendered Kubernetes manifests into the typed objects of
// k8s.io/api at the version pinned in go.mod (v0.37.2: Kubernetes 1.37), with nothing
// fetched at run time. CRDs (the Prometheus Operator's ServiceMonitor) are named with
// -allow-kind: their Go types pull a k8s.io/utils version the module proxy does not serve.
//
// Usage: helm template ... | k8svalidate [-allow-kind Kind ...]   (or: k8svalidate FILE...)
//
// Each YAML document must name an apiVersion and kind this program knows, and decode
// with no unknown or duplicate field (sigs.k8s.io/yaml UnmarshalStrict) and no type
// error. Exit 0 when every document passes; 1 listing each failure; 2 on bad usage.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// known maps "apiVersion/Kind" to a constructor of the typed object.
var known = map[string]func() any{
	"v1/ConfigMap":                             func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                func() any { return &corev1.Secret{} },
	"v1/Service":                               func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                        func() any { return &corev1.ServiceAccount{} },
	"v1/Pod":                                   func() any { return &corev1.Pod{} },
	"apps/v1/Deployment":                       func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                      func() any { return &appsv1.StatefulSet{} },
	"autoscaling/v2/HorizontalPodAutoscaler":   func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":       func() any { return &networkingv1.NetworkPolicy{} },
	"rbac.authorization.k8s.io/v1/Role":        func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding": func() any { return &rbacv1.RoleBinding{} },
}

type kinds []string

func (k *kinds) String() string     { return strings.Join(*k, ",") }
func (k *kinds) Set(v string) error { *k = append(*k, v); return nil }

func main() {
	var allowed kinds
	flag.Var(&allowed, "allow-kind", "apiVersion/Kind passed without a typed check (a CRD); repeatable")
	flag.Parse()
	var input []byte
	var err error
	if flag.NArg() == 0 {
		input, err = io.ReadAll(os.Stdin)
	} else {
		for _, name := range flag.Args() {
			var b []byte
			if b, err = os.ReadFile(name); err != nil {
				break
			}
			input = append(append(input, b...), []byte("\n---\n")...)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8svalidate:", err)
		os.Exit(2)
	}
	failures, checked := validate(input, allowed)
	for _, f := range failures {
		fmt.Fprintln(os.Stderr, "k8svalidate:", f)
	}
	if len(failures) > 0 {
		os.Exit(1)
	}
	fmt.Printf("k8svalidate: %d documents valid\n", checked)
}

func validate(input []byte, allowed kinds) (failures []string, checked int) {
	for i, doc := range split(input) {
		var h header
		if err := yaml.Unmarshal(doc, &h); err != nil {
			failures = append(failures, fmt.Sprintf("document %d: not YAML: %v", i+1, err))
			continue
		}
		key := h.APIVersion + "/" + h.Kind
		where := fmt.Sprintf("document %d (%s %s)", i+1, key, h.Metadata.Name)
		if h.Metadata.Name == "" {
			failures = append(failures, where+": metadata.name is required")
			continue
		}
		newObject, ok := known[key]
		if !ok {
			if contains(allowed, key) {
				checked++
				continue
			}
			failures = append(failures, where+": unknown apiVersion/kind")
			continue
		}
		if err := yaml.UnmarshalStrict(doc, newObject()); err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		checked++
	}
	return failures, checked
}

// split cuts a multi-document YAML stream at "---" lines, dropping empty documents.
func split(input []byte) [][]byte {
	var docs [][]byte
	var current bytes.Buffer
	flush := func() {
		if strings.TrimSpace(stripComments(current.String())) != "" {
			docs = append(docs, append([]byte(nil), current.Bytes()...))
		}
		current.Reset()
	}
	scanner := bufio.NewScanner(bytes.NewReader(input))
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.HasPrefix(line, "---") && strings.TrimSpace(strings.TrimPrefix(line, "---")) == "" {
			flush()
			continue
		}
		current.WriteString(line + "\n")
	}
	flush()
	return docs
}

func stripComments(text string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func contains(list []string, value string) bool {
	for _, v := range list {
		if v == value {
			return true
		}
	}
	return false
}
