package dynamo

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarport"
)

// encodeJob is a job's item, laid out as jobs.go describes. Absent
// slices and errors stay absent, so they read back as nil, as stored.
func encodeJob(job tarport.Job) map[string]types.AttributeValue {
	item := jobItemKey(job.ID)
	str := func(name, v string) { item[name] = &types.AttributeValueMemberS{Value: v} }
	str(attrJobID, job.ID)
	str(attrJobKey, job.Key)
	str(attrJobImage, job.Image)
	str(attrJobRef, job.Ref)
	str(attrJobPlatform, job.Platform)
	str(attrJobDigest, job.Digest.String())
	str(attrJobIndexDigest, job.IndexDigest.String())
	str(attrJobConfigDigest, job.ConfigDigest.String())
	str(attrJobRefName, job.RefName)
	str(attrJobName, job.Name)
	str(attrJobStatus, string(job.Status))
	str(attrJobTarKey, job.TarKey)
	str(attrJobFileName, job.FileName)
	item[attrJobPrivate] = &types.AttributeValueMemberBOOL{Value: job.Private}
	item[attrJobTotal] = num(job.TotalBytes)
	item[attrJobRemaining] = num(int64(job.Remaining))
	item[attrJobCreated] = nanos(job.CreatedAt)
	item[attrJobUpdated] = nanos(job.UpdatedAt)
	item[attrJobExpires] = nanos(job.ExpiresAt)
	if ttl, ok := ttlSeconds(job.ExpiresAt); ok {
		item[AttrTTL] = ttl
	}
	if job.RepoTags != nil {
		tags := make([]types.AttributeValue, len(job.RepoTags))
		for i, t := range job.RepoTags {
			tags[i] = &types.AttributeValueMemberS{Value: t}
		}
		item[attrJobRepoTags] = &types.AttributeValueMemberL{Value: tags}
	}
	if job.Layers != nil {
		layers := make([]types.AttributeValue, len(job.Layers))
		for i, l := range job.Layers {
			// One-letter names: 1000 layers must fit in one item.
			m := map[string]types.AttributeValue{
				"d": &types.AttributeValueMemberS{Value: l.Digest.String()},
				"s": num(l.Size),
			}
			if l.Parts > 0 {
				m[attrLayerParts] = num(int64(l.Parts))
				partsLeft, _ := partAttrs(i)
				item[partsLeft] = num(int64(l.Parts))
			}
			layers[i] = &types.AttributeValueMemberM{Value: m}
			// Progress is in the layer's own item (putLayers). done_<i> and
			// left_<i> are written once, for code of the previous layout
			// still running during a deploy (or after a rollback): it
			// finishes a layer only where left_<i> exists.
			done, left, fin := layerAttrs(i)
			item[done] = num(l.DoneBytes)
			item[left] = num(l.Size - l.DoneBytes)
			if l.Finished {
				item[fin] = &types.AttributeValueMemberBOOL{Value: true}
			}
		}
		item[attrJobLayers] = &types.AttributeValueMemberL{Value: layers}
		item[attrLayerCount] = num(int64(len(job.Layers)))
	}
	if job.Error != nil {
		item[attrJobError] = encodeJobError(job.Error)
	}
	if len(job.Bundle) > 0 {
		// Written once at create and only ever read whole: one JSON string
		// (at most 50 images, some 20 KB) rather than nested attributes.
		b, _ := json.Marshal(job.Bundle) // plain strings and ints: cannot fail
		item[attrJobBundle] = &types.AttributeValueMemberS{Value: string(b)}
	}
	return item
}

func encodeJobError(e *tarport.JobError) types.AttributeValue {
	return &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
		"code":    &types.AttributeValueMemberS{Value: string(e.Code)},
		"message": &types.AttributeValueMemberS{Value: e.Message},
	}}
}

// decodeJob reads a job's item back, with its layers' progress items by
// index (an item written before progress items keeps done_<i> itself).
func decodeJob(item map[string]types.AttributeValue, progress map[int]map[string]types.AttributeValue) (tarport.Job, error) {
	d := itemDecoder{item: item}
	if _, ok := item[attrJobID]; !ok {
		return tarport.Job{}, fmt.Errorf("item has no %q attribute", attrJobID)
	}
	job := tarport.Job{
		ID:           d.str(attrJobID),
		Key:          d.str(attrJobKey),
		Image:        d.str(attrJobImage),
		Ref:          d.str(attrJobRef),
		Platform:     d.str(attrJobPlatform),
		Digest:       digest.Digest(d.str(attrJobDigest)),
		IndexDigest:  digest.Digest(d.str(attrJobIndexDigest)),
		ConfigDigest: digest.Digest(d.str(attrJobConfigDigest)),
		RefName:      d.str(attrJobRefName),
		Name:         d.str(attrJobName),
		Private:      d.boolean(attrJobPrivate),
		Status:       tarport.Status(d.str(attrJobStatus)),
		TotalBytes:   d.num(attrJobTotal),
		Remaining:    int(d.num(attrJobRemaining)),
		TarKey:       d.str(attrJobTarKey),
		FileName:     d.str(attrJobFileName),
		CreatedAt:    d.time(attrJobCreated),
		UpdatedAt:    d.time(attrJobUpdated),
		ExpiresAt:    d.time(attrJobExpires),
	}
	if b := d.str(attrJobBundle); b != "" {
		if err := json.Unmarshal([]byte(b), &job.Bundle); err != nil {
			d.fail(attrJobBundle, err.Error())
		}
	}
	if tags, ok := d.list(attrJobRepoTags); ok {
		job.RepoTags = make([]string, len(tags))
		for i, t := range tags {
			job.RepoTags[i] = d.strValue(attrJobRepoTags, t)
		}
	}
	if layers, ok := d.list(attrJobLayers); ok {
		job.Layers = make([]tarport.LayerProgress, len(layers))
		for i, av := range layers {
			m, ok := av.(*types.AttributeValueMemberM)
			if !ok {
				d.fail(attrJobLayers, "an element is not a map")
				break
			}
			l := itemDecoder{item: m.Value}
			done, _, fin := layerAttrs(i)
			lp := tarport.LayerProgress{
				Digest:   digest.Digest(l.str("d")),
				Size:     l.num("s"),
				Finished: d.boolean(fin),
				Parts:    int(l.num(attrLayerParts)),
			}
			if p, ok := progress[i]; ok {
				pd := itemDecoder{item: p}
				lp.DoneBytes = pd.num(attrDone)
				if pd.err != nil {
					d.fail(attrDone, pd.err.Error())
				}
			} else if _, ok := item[done]; ok {
				lp.DoneBytes = d.num(done)
			}
			if l.err != nil {
				d.fail(attrJobLayers, l.err.Error())
			}
			if lp.Finished {
				lp.DoneBytes = lp.Size
			}
			job.Layers[i] = lp
		}
	}
	if av, ok := item[attrJobError]; ok {
		m, ok := av.(*types.AttributeValueMemberM)
		if !ok {
			d.fail(attrJobError, "not a map")
		} else {
			e := itemDecoder{item: m.Value}
			job.Error = &tarport.JobError{Code: tarport.Code(e.str("code")), Message: e.str("message")}
			if e.err != nil {
				d.fail(attrJobError, e.err.Error())
			}
		}
	}
	return job, d.err
}

// intAttr reads one number attribute that must be there.
func intAttr(item map[string]types.AttributeValue, name string) (int64, error) {
	if _, ok := item[name]; !ok {
		return 0, fmt.Errorf("item has no %q attribute", name)
	}
	d := itemDecoder{item: item}
	n := d.num(name)
	return n, d.err
}

// itemDecoder reads attributes, absent ones as zero values, and keeps the
// first attribute of a wrong type as its error.
type itemDecoder struct {
	item map[string]types.AttributeValue
	err  error
}

func (d *itemDecoder) fail(name, why string) {
	if d.err == nil {
		d.err = fmt.Errorf("attribute %s: %s", name, why)
	}
}

func (d *itemDecoder) str(name string) string {
	av, ok := d.item[name]
	if !ok {
		return ""
	}
	return d.strValue(name, av)
}

func (d *itemDecoder) strValue(name string, av types.AttributeValue) string {
	s, ok := av.(*types.AttributeValueMemberS)
	if !ok {
		d.fail(name, "not a string")
		return ""
	}
	return s.Value
}

func (d *itemDecoder) num(name string) int64 {
	av, ok := d.item[name]
	if !ok {
		return 0
	}
	n, ok := av.(*types.AttributeValueMemberN)
	if !ok {
		d.fail(name, "not a number")
		return 0
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		d.fail(name, err.Error())
	}
	return v
}

func (d *itemDecoder) boolean(name string) bool {
	av, ok := d.item[name]
	if !ok {
		return false
	}
	b, ok := av.(*types.AttributeValueMemberBOOL)
	if !ok {
		d.fail(name, "not a boolean")
	}
	return ok && b.Value
}

func (d *itemDecoder) time(name string) time.Time {
	av, ok := d.item[name]
	if !ok {
		return time.Time{}
	}
	t, err := fromNanos(av)
	if err != nil {
		d.fail(name, err.Error())
	}
	return t
}

func (d *itemDecoder) list(name string) ([]types.AttributeValue, bool) {
	av, ok := d.item[name]
	if !ok {
		return nil, false
	}
	l, ok := av.(*types.AttributeValueMemberL)
	if !ok {
		d.fail(name, "not a list")
		return nil, false
	}
	return l.Value, true
}

// itemSize is an item's size as DynamoDB counts it against the 400 KB
// limit: attribute names plus values; numbers about one byte per two
// digits plus one; sets the sum of their elements; lists and maps 3
// bytes plus 1 per element.
func itemSize(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name) + valueSize(v)
	}
	return n
}

func valueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return numberSize(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberSS:
		n := 0
		for _, e := range v.Value {
			n += len(e)
		}
		return n
	case *types.AttributeValueMemberNS:
		n := 0
		for _, e := range v.Value {
			n += numberSize(e)
		}
		return n
	case *types.AttributeValueMemberBS:
		n := 0
		for _, e := range v.Value {
			n += len(e)
		}
		return n
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += 1 + valueSize(e)
		}
		return n
	case *types.AttributeValueMemberM:
		return 3 + len(v.Value) + itemSize(v.Value)
	}
	return 0
}

// numberSize counts every digit (DynamoDB counts significant ones), so it
// errs on the large side.
func numberSize(n string) int {
	return (len(strings.TrimLeft(n, "-0"))+1)/2 + 1
}
