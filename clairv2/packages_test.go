package clairv2

import (
	"reflect"
	"testing"

	"github.com/layerbridge/layerbridge/report"
)

func TestLayerReportPackagesRecorded(t *testing.T) {
	f, srv := newFakeClair(t)
	f.mux.Handle("/v1/layers/"+sampleLayer, loadExchange(t, "v2.1.7/GET-v1-layers-features-vulnerabilities.http"))
	rep, err := newTestClient(t, srv).LayerReport(t.Context(), sampleLayer)
	if err != nil {
		t.Fatal(err)
	}
	// Clair 2.1.7 lists the same 14 packages of alpine:3.11 as Clair 4, as
	// features of namespace alpine:v3.11.
	if len(rep.Packages) != 14 {
		t.Fatalf("%d packages, want 14: %+v", len(rep.Packages), rep.Packages)
	}
	alpine := report.Distribution{ID: "alpine", VersionID: "3.11"}
	for _, p := range rep.Packages {
		if p.Type != "apk" || p.Distribution != alpine || p.Layer != sampleLayer || p.Name == "" || p.Version == "" {
			t.Errorf("package %+v: want an apk of alpine 3.11 added by %s", p, sampleLayer)
		}
	}
}

func TestPackagesFromNamespaces(t *testing.T) {
	body := `{"Layer":{"Name":"top","NamespaceName":"debian:12","Features":[
	  {"Name":"openssl","NamespaceName":"debian:12","VersionFormat":"dpkg","Version":"3.0.11-1","AddedBy":"base"},
	  {"Name":"bash","Version":"5.2","AddedBy":"top"},
	  {"Name":"glibc","NamespaceName":"oracle:8","VersionFormat":"rpm","Version":"2.28-236.0.1.el8","AddedBy":"top"},
	  {"Name":"curl","NamespaceName":"centos:7","VersionFormat":"rpm","Version":"7.29.0-59.el7","AddedBy":"top"},
	  {"Name":"foo","NamespaceName":"mystery:1","VersionFormat":"rpm","Version":"1","AddedBy":"top"},
	  {"Name":"musl","NamespaceName":"alpine:v3.18","VersionFormat":"dpkg","Version":"1.2.4-r2","AddedBy":"top"}]}}`
	rep, err := decodeLayerReport([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []report.Package{
		{Name: "openssl", Version: "3.0.11-1", Type: "deb", Distribution: report.Distribution{ID: "debian", VersionID: "12"}, Layer: "base"},
		// No namespace of its own: the layer's.
		{Name: "bash", Version: "5.2", Type: "deb", Distribution: report.Distribution{ID: "debian", VersionID: "12"}, Layer: "top"},
		{Name: "glibc", Version: "2.28-236.0.1.el8", Type: "rpm", Distribution: report.Distribution{ID: "ol", VersionID: "8"}, Layer: "top"},
		{Name: "curl", Version: "7.29.0-59.el7", Type: "rpm", Distribution: report.Distribution{ID: "centos", VersionID: "7"}, Layer: "top"},
		{Name: "foo", Version: "1", Type: "rpm", Distribution: report.Distribution{ID: "mystery", VersionID: "1"}, Layer: "top"},
		// Clair 2 says dpkg for Alpine's versions: the namespace decides.
		{Name: "musl", Version: "1.2.4-r2", Type: "apk", Distribution: report.Distribution{ID: "alpine", VersionID: "3.18"}, Layer: "top"},
	}
	if !reflect.DeepEqual(rep.Packages, want) {
		t.Errorf("packages:\n got %+v\nwant %+v", rep.Packages, want)
	}
}
