package workflows

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/drydock-dev/drydock/internal/pools"
)

// The schedule list comes from visibility, which on a PostgreSQL-backed
// cluster trails the deletes: a schedule another worker (or this one, a
// moment ago) deleted is still listed, and deleting it again fails with
// "workflow execution already completed". That is the state wanted, not an
// error: every worker start runs EnsurePoolSchedules, and a second worker
// starting beside the first failed there (seen in make test-cluster).
func TestEnsurePoolSchedulesToleratesSchedulesAlreadyDeleted(t *testing.T) {
	gone := &mocks.ScheduleHandle{}
	gone.On("Delete", mock.Anything).Return(serviceerror.NewNotFound("workflow execution already completed"))
	list := &mocks.ScheduleListIterator{}
	list.On("HasNext").Return(true).Once()
	list.On("Next").Return(&client.ScheduleListEntry{ID: "runner-keepalive:removed"}, nil).Once()
	list.On("HasNext").Return(false)
	sc := &mocks.ScheduleClient{}
	sc.On("List", mock.Anything, mock.Anything).Return(list, nil)
	sc.On("GetHandle", mock.Anything, "runner-keepalive:removed").Return(gone)
	c := &mocks.Client{}
	c.On("ScheduleClient").Return(sc)

	require.NoError(t, EnsurePoolSchedules(context.Background(), c, &pools.Config{}))
	gone.AssertCalled(t, "Delete", mock.Anything)
}

// Any other failure to delete is still an error.
func TestEnsurePoolSchedulesReportsOtherDeleteErrors(t *testing.T) {
	h := &mocks.ScheduleHandle{}
	h.On("Delete", mock.Anything).Return(serviceerror.NewUnavailable("frontend restarting"))
	list := &mocks.ScheduleListIterator{}
	list.On("HasNext").Return(true).Once()
	list.On("Next").Return(&client.ScheduleListEntry{ID: "runner-prewarm:old:0"}, nil).Once()
	sc := &mocks.ScheduleClient{}
	sc.On("List", mock.Anything, mock.Anything).Return(list, nil)
	sc.On("GetHandle", mock.Anything, "runner-prewarm:old:0").Return(h)
	c := &mocks.Client{}
	c.On("ScheduleClient").Return(sc)

	err := EnsurePoolSchedules(context.Background(), c, &pools.Config{})
	assert.ErrorContains(t, err, "frontend restarting")
}
