package e2e

import (
	"context"
	"fmt"
	"time"

	"github.com/drydock-dev/drydock/internal/testing/harness"
	"github.com/drydock-dev/drydock/internal/testing/testenv"
)

// useCluster points the package's stacks at a namespace of its own on the
// make-cluster Temporal in dir (make test-cluster): PostgreSQL, SQL
// visibility that trails the workflows, and the services as separate
// processes, instead of the dev server. The dev server's early
// continue-as-new suggestion does not apply there: the cluster runs the
// production dynamic config (deploy/temporal/dynamicconfig.yaml).
func useCluster(dir string) (stop func(), err error) {
	c, err := harness.AttachCluster(dir)
	if err != nil {
		return nil, err
	}
	cli, err := testenv.TemporalCLI()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t, err := harness.OnCluster(ctx, c, cli)
	if err != nil {
		return nil, err
	}
	tc, err := t.Dial()
	if err != nil {
		return nil, fmt.Errorf("dial the cluster: %w", err)
	}
	temporalAddr, temporalNamespace, temporalClient = t.Address(), t.Namespace(), tc
	return tc.Close, nil
}
