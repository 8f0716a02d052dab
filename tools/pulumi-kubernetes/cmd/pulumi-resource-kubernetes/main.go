// Command pulumi-resource-kubernetes is the Pulumi Kubernetes provider, built by `make k8s-provider`.
//
// Why a main package of our own: upstream's main package //go:embeds schema-embed.json and
// terraform-mapping-embed.json, which its `go:generate` writes (generate.go: schema.json with the release's
// version set, and the Terraform mapping re-serialized) and which are not in the module zip, so it cannot be
// built from the module as it is served. scripts/build-k8s-provider.sh runs upstream's own generate.go on
// copies of its inputs into this folder (git-ignored), and this package serves the provider as upstream's does.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var schema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, schema, terraformMapping)
}
