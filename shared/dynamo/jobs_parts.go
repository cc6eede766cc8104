package dynamo

import (
	"context"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

var _ download.PartedJobs = (*Jobs)(nil)

// A split layer i keeps its part count as "p" in its element of the
// layers list (it never changes), a count of parts left, pl_<i>, set at
// Create, and the number set of its finished parts, pf_<i>, absent until
// the first part is in.
const attrLayerParts = "p"

// maxJobItemBytes bounds a job's item in its largest state: DynamoDB
// refuses items over 400 KB, and the margin is for the job's error and
// for fields added later. 1000 layers take some 120 KB, a layer of
// 10,000 parts about 35 KB more, so only an image split into some 65,000
// range tasks is refused.
const maxJobItemBytes = 350_000

// largestItemSize is the size job's item can grow to: every layer
// finished, its done and left bytes both as long as its size (code of the
// previous layout updates them), and every part of every split layer in
// its set.
func largestItemSize(job tarport.Job) int {
	n := itemSize(encodeJob(job))
	for i, l := range job.Layers {
		_, _, fin := layerAttrs(i)
		// done_<i> and left_<i> as long as the size each (an overcount).
		n += len(fin) + 1 + 2*valueSize(num(l.Size)) - valueSize(num(l.DoneBytes)) - valueSize(num(l.Size-l.DoneBytes))
		if l.Parts > 0 {
			_, finished := partAttrs(i)
			n += len(finished)
			for p := 1; p <= l.Parts; p++ {
				n += numberSize(strconv.Itoa(p))
			}
		}
	}
	return n
}

// checkItemSize refuses a job whose item could outgrow DynamoDB's limit,
// at Create rather than at a part's finish halfway through the download.
func checkItemSize(job tarport.Job) error {
	n := largestItemSize(job)
	if n <= maxJobItemBytes {
		return nil
	}
	parts := 0
	for _, l := range job.Layers {
		parts += l.Parts
	}
	return tarport.Errorf(tarport.CodeTooLarge, "the image has too many layers or layer parts to track in one job (%d layers, %d parts of split layers)", len(job.Layers), parts)
}

// partAttrs names split layer i's top-level attributes.
func partAttrs(i int) (left, finished string) {
	n := strconv.Itoa(i)
	return "pl_" + n, "pf_" + n
}

// FinishPart marks part n of a split layer done once: one update that adds
// n to the layer's set of finished parts and counts its parts left down,
// conditioned on the job being live, n being one of the layer's parts and
// not in the set yet; so exactly one caller sees each count. A number
// set's ADD and contains are what make it one write without a
// transaction (dynalite has both).
func (j *Jobs) FinishPart(ctx context.Context, id string, layer, part int) (int, bool, error) {
	if !validID(id) {
		return 0, false, errJobNotFound(id)
	}
	if layer < 0 || part < 1 {
		return j.explainPart(ctx, id, layer, part) // no item satisfies it
	}
	left, finished := partAttrs(layer)
	n := strconv.Itoa(part)
	layerPath := "#layers[" + strconv.Itoa(layer) + "].#p"
	out, err := j.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(j.table),
		Key:                 jobItemKey(id),
		UpdateExpression:    aws.String("ADD #pf :part, #pl :minus SET #upd = :now"),
		ConditionExpression: aws.String("#exp > :now AND " + layerPath + " >= :n AND (attribute_not_exists(#pf) OR NOT contains(#pf, :n))"),
		ExpressionAttributeNames: map[string]string{
			"#pf": finished, "#pl": left, "#upd": attrJobUpdated, "#exp": attrJobExpires,
			"#layers": attrJobLayers, "#p": attrLayerParts,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":part":  &types.AttributeValueMemberNS{Value: []string{n}},
			":n":     &types.AttributeValueMemberN{Value: n},
			":minus": num(-1),
			":now":   nanos(j.now()),
		},
		// Returns the set too: at most some 40 KB (10,000 parts), small
		// next to the range the task just fetched.
		ReturnValues: types.ReturnValueUpdatedNew,
	})
	if err == nil {
		remaining, err := intAttr(out.Attributes, left)
		if err != nil {
			return 0, false, fmt.Errorf("finishing part %d of layer %d of job %s: %w", part, layer, id, err)
		}
		return int(remaining), true, nil
	}
	if !conditionFailed(err) {
		return 0, false, fmt.Errorf("finishing part %d of layer %d of job %s: %w", part, layer, id, err)
	}
	return j.explainPart(ctx, id, layer, part)
}

// explainPart tells why FinishPart's condition failed, reading the item
// consistently: a missing or expired job, a layer not split or a part
// out of range (errors), or a part finished before, whose layer's count
// it reports.
func (j *Jobs) explainPart(ctx context.Context, id string, layer, part int) (int, bool, error) {
	left, finished := partAttrs(layer)
	proj := "#pk, #exp, #pl, #pf"
	names := map[string]string{"#pk": AttrPK, "#exp": attrJobExpires, "#pl": left, "#pf": finished}
	if layer >= 0 {
		proj += ", #layers[" + strconv.Itoa(layer) + "].#p"
		names["#layers"], names["#p"] = attrJobLayers, attrLayerParts
	}
	out, err := j.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(j.table),
		Key:                      jobItemKey(id),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String(proj),
		ExpressionAttributeNames: names,
	})
	if err == nil && out.Item == nil {
		err = errJobNotFound(id)
	}
	if err != nil {
		return 0, false, fmt.Errorf("finishing part %d of layer %d of job %s: %w", part, layer, id, err)
	}
	d := itemDecoder{item: out.Item}
	if (tarport.Job{ExpiresAt: d.time(attrJobExpires)}).Expired(j.now()) {
		return 0, false, fmt.Errorf("finishing part %d of layer %d of job %s: %w", part, layer, id, errJobNotFound(id))
	}
	parts := 0
	if l, ok := d.list(attrJobLayers); ok && len(l) == 1 {
		if m, ok := l[0].(*types.AttributeValueMemberM); ok {
			ld := itemDecoder{item: m.Value}
			parts = int(ld.num(attrLayerParts))
		}
	}
	if parts == 0 {
		return 0, false, tarport.Errorf(tarport.CodeInternal, "finishing part %d of layer %d of job %s: the layer is not split (or there is no such layer)", part, layer, id)
	}
	if part < 1 || part > parts {
		return 0, false, tarport.Errorf(tarport.CodeInternal, "finishing part %d of layer %d of job %s: the layer has parts 1..%d", part, layer, id, parts)
	}
	set, ok := out.Item[finished].(*types.AttributeValueMemberNS)
	if !ok || !containsNumber(set.Value, part) {
		// The condition failed, yet the part is not in the set: sets only
		// grow, so the item is not as this code writes it.
		return 0, false, fmt.Errorf("finishing part %d of layer %d of job %s: the update was refused but the part is not marked", part, layer, id)
	}
	remaining, err := intAttr(out.Item, left)
	if err == nil && d.err != nil {
		err = d.err
	}
	if err != nil {
		return 0, false, fmt.Errorf("finishing part %d of layer %d of job %s: %w", part, layer, id, err)
	}
	return int(remaining), false, nil
}

func containsNumber(set []string, n int) bool {
	for _, s := range set {
		if v, err := strconv.Atoi(s); err == nil && v == n {
			return true
		}
	}
	return false
}
