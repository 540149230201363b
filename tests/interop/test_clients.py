"""Interoperability with FHIR software written elsewhere.

The fhirpy client drives the server through its own API (create, read, update, search with
paging, operations), and every response body the server sends is parsed by the
fhir.resources R4B models (pydantic, unknown elements refused) before fhirpy sees it.
Run by scripts/interop-test, which starts the server and sets FHIR_BASE_URL and FHIR_TOKEN.
"""

import json
import os
import uuid
from datetime import date, datetime, timezone

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

BASE_URL = os.environ["FHIR_BASE_URL"]
TOKEN = os.environ["FHIR_TOKEN"]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
MRN = "urn:oid:2.16.840.1.113883.3.7431.1"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

# (method, url, status, resourceType or None) of every response, once its body parsed.
RESPONSES = []


def parse_strictly(response, *args, **kwargs):
    """requests hook: every body must be FHIR JSON that the R4B model of its type accepts."""
    if not response.content:
        assert response.status_code in (204, 304), f"{response.url}: empty {response.status_code}"
        RESPONSES.append((response.request.method, response.url, response.status_code, None))
        return response
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith("application/fhir+json"), f"{response.url}: {content_type}"
    resource_type = json.loads(response.content)["resourceType"]
    get_fhir_model_class(resource_type).model_validate_json(response.content, strict=True)
    RESPONSES.append((response.request.method, response.url, response.status_code, resource_type))
    return response


@pytest.fixture(scope="session")
def client():
    return SyncFHIRClient(
        BASE_URL,
        authorization=f"Bearer {TOKEN}",
        requests_config={"hooks": {"response": [parse_strictly]}, "timeout": 30},
    )


@pytest.fixture
def patient(client):
    created = client.resource(
        "Patient",
        identifier=[{"system": MRN, "value": f"KC{uuid.uuid4().hex[:8]}"}],
        name=[{"family": "Rivera", "given": ["Lena"]}],
        gender="female",
        birthDate="1984-07-03",
    )
    created.save()
    return created


def vital(patient_id, code, value, unit, when="2026-11-20T10:00:00Z", extra_codes=()):
    codings = [{"system": LOINC, "code": c} for c in (code, *extra_codes)]
    return {
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": codings},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def blood_pressure(patient_id, systolic, diastolic, when="2026-11-20T09:50:00Z"):
    def component(code, value):
        return {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
        }

    return {
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when,
        "component": [component("8480-6", systolic), component("8462-4", diastolic)],
    }


def pain_score(patient_id, value, when):
    return {
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "survey"}]}],
        "code": {"coding": [{"system": LOINC, "code": "72514-3"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when,
        "valueInteger": value,
    }


def save(client, resource_type, fields):
    resource = client.resource(resource_type, **fields)
    resource.save()
    assert resource.id, f"{resource_type} saved without an id"
    return resource


def observations_of(client, patient_id, count):
    """`count` Observations of the patient, alternating heart rates and pain scores, one a day."""
    created = []
    for day in range(count):
        when = f"2026-11-{day + 1:02d}T10:00:00Z"
        fields = vital(patient_id, "8867-4", 60 + day, "/min", when) if day % 2 == 0 else pain_score(patient_id, day % 10, when)
        created.append(save(client, "Observation", fields))
    return created


def test_the_capability_statement_is_r4_and_lists_everything(client):
    statement = CapabilityStatement.model_validate(client.execute("metadata", method="get"))
    assert statement.fhirVersion == "4.0.1"
    assert statement.kind == "instance"
    patient = next(r for r in statement.rest[0].resource if r.type == "Patient")
    assert [(o.name, o.definition) for o in patient.operation] == [
        (
            "medical-necessity",
            "https://ketamine-fhir.example.org/fhir/OperationDefinition/Patient-medical-necessity",
        ),
        ("everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything"),
        ("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"),
    ]
    assert {"transaction", "batch"} <= {i.code for i in statement.rest[0].interaction}
    observation = next(r for r in statement.rest[0].resource if r.type == "Observation")
    assert {"subject", "code", "date"} <= {p.name for p in observation.searchParam}


def test_a_patient_is_created_read_searched_and_updated(client, patient):
    assert patient.meta.versionId == "1"
    read = Patient.model_validate(client.reference("Patient", patient.id).to_resource().serialize())
    assert read.id == patient.id
    assert read.name[0].family == "Rivera" and read.name[0].given == ["Lena"]
    assert read.gender == "female"
    assert read.birthDate == date(1984, 7, 3)

    identifier = patient.identifier[0]
    found = client.resources("Patient").search(identifier=f"{MRN}|{identifier.value}").fetch_all()
    assert [p.id for p in found] == [patient.id]

    patient.gender = "other"
    patient.save()
    assert patient.meta.versionId == "2"
    assert client.get("Patient", patient.id)["gender"] == "other"


def test_vital_signs_and_pain_scores_pass_validation_and_read_back(client, patient):
    heart_rate = save(client, "Observation", vital(patient.id, "8867-4", 72, "/min"))
    spo2 = save(client, "Observation", vital(patient.id, "59408-5", 98, "%", extra_codes=("2708-6",)))
    weight = save(client, "Observation", vital(patient.id, "29463-7", 70.5, "kg"))
    pressure = save(client, "Observation", blood_pressure(patient.id, 128, 82))
    pain = save(client, "Observation", pain_score(patient.id, 7, "2026-11-20T09:45:00Z"))

    def read(resource):
        return Observation.model_validate(client.get("Observation", resource.id))

    assert float(read(heart_rate).valueQuantity.value) == 72
    assert read(heart_rate).valueQuantity.code == "/min"
    assert [c.code for c in read(spo2).code.coding] == ["59408-5", "2708-6"]
    assert float(read(weight).valueQuantity.value) == 70.5
    components = {c.code.coding[0].code: float(c.valueQuantity.value) for c in read(pressure).component}
    assert components == {"8480-6": 128, "8462-4": 82}
    assert read(pain).valueInteger == 7
    assert read(pain).effectiveDateTime == datetime(2026, 11, 20, 9, 45, tzinfo=timezone.utc)
    assert read(pain).subject.reference == f"Patient/{patient.id}"

    refused = client.resource("Observation", **vital(patient.id, "8867-4", 72, "/min"))
    del refused["valueQuantity"]["system"]
    with pytest.raises(OperationOutcome) as outcome:
        refused.save()
    assert "Vital signs profile" in str(outcome.value)


def test_search_pages_are_walked_by_the_client(client, patient):
    created = observations_of(client, patient.id, 7)
    before = len(RESPONSES)
    search = client.resources("Observation").search(subject=f"Patient/{patient.id}").limit(3)
    walked = [o.id for o in search]
    assert sorted(walked) == sorted(o.id for o in created)
    assert len(walked) == 7, "no resource twice"
    pages = [r for r in RESPONSES[before:] if r[3] == "Bundle"]
    assert len(pages) == 3, "7 matches in pages of 3"

    pains = client.resources("Observation").search(subject=f"Patient/{patient.id}", code=f"{LOINC}|72514-3")
    assert [o.id for o in pains.sort("date").fetch_all()] == [o.id for o in created if o.code.coding[0].code == "72514-3"]
    newest = client.resources("Observation").search(patient=patient.id).sort("-date").limit(2).fetch()
    assert [o.id for o in newest] == [created[6].id, created[5].id]

    raw = Bundle.model_validate(json.loads(json.dumps(search.fetch_raw())))
    assert raw.type == "searchset" and len(raw.entry) == 3
    assert raw.entry[0].fullUrl == f"{BASE_URL}/Observation/{raw.entry[0].resource.id}"


def test_a_transaction_creates_a_patient_and_its_observation(client):
    patient_url, observation_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    mrn = f"KC{uuid.uuid4().hex[:8]}"
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}], "gender": "male"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": observation_url,
                "resource": {"resourceType": "Observation", **pain_score("placeholder", 5, "2026-11-21T08:00:00Z")}
                | {"subject": {"reference": patient_url}},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = Bundle.model_validate(client.execute(client.url, method="post", data=transaction))
    assert response.type == "transaction-response"
    assert len(response.entry) == 2
    locations = []
    for entry in response.entry:
        assert entry.response.status.startswith("201"), entry.response.status
        locations.append(entry.response.location)
    patient_type, patient_id = locations[0].split("/")[:2]
    observation_type, observation_id = locations[1].split("/")[:2]
    assert (patient_type, observation_type) == ("Patient", "Observation")
    assert client.get("Patient", patient_id)["identifier"][0]["value"] == mrn
    observation = Observation.model_validate(client.get("Observation", observation_id))
    assert observation.subject.reference == f"Patient/{patient_id}"
    assert observation.valueInteger == 5


def walk_everything(client, patient_id, params):
    """Every page of `Patient/{id}/$everything`, following the `next` links."""
    pages = [client.reference("Patient", patient_id).execute("$everything", method="get", params=params)]
    while len(pages) < 20:
        following = [link["url"] for link in pages[-1].get("link", []) if link["relation"] == "next"]
        if not following:
            break
        pages.append(client.execute(following[0], method="get"))
    return [Bundle.model_validate(page) for page in pages]


def test_everything_returns_the_patient_record_in_full_pages(client, patient):
    nurse = save(client, "Practitioner", {"name": [{"family": "Okafor", "given": ["Ada"]}]})
    created = observations_of(client, patient.id, 5)
    for observation in created[:2]:
        observation.performer = [{"reference": f"Practitioner/{nurse.id}"}]
        observation.save()
    antiemetic = save(client, "MedicationAdministration", {
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "26225", "display": "ondansetron"}]},
        "subject": {"reference": f"Patient/{patient.id}"},
        "effectivePeriod": {"start": "2026-11-03T09:40:00Z", "end": "2026-11-03T09:45:00Z"},
        "performer": [{"actor": {"reference": f"Practitioner/{nurse.id}"}}],
        "dosage": {"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
                   "dose": {"value": 4, "unit": "mg", "system": UCUM, "code": "mg"}},
    })
    other = client.resource("Patient", name=[{"family": "Elsewhere"}])
    other.save()
    save(client, "Observation", vital(other.id, "8867-4", 90, "/min"))

    pages = walk_everything(client, patient.id, {"_count": 3})
    expected = [("Patient", patient.id), ("Practitioner", nurse.id)]
    expected += [("Observation", o.id) for o in created] + [("MedicationAdministration", antiemetic.id)]
    entries = [e for page in pages for e in page.entry]
    assert [(e.resource.get_resource_type(), e.resource.id) for e in entries] == expected
    assert [len(page.entry) for page in pages] == [3, 3, 2]
    modes = {(e.resource.get_resource_type(), e.search.mode) for e in entries}
    assert modes == {("Practitioner", "include"), ("Patient", "match"), ("Observation", "match"), ("MedicationAdministration", "match")}
    assert all(e.fullUrl == f"{BASE_URL}/{e.resource.get_resource_type()}/{e.resource.id}" for e in entries)

    only_pains = walk_everything(client, patient.id, {"_type": "Observation", "start": "2026-11-02", "end": "2026-11-03"})
    assert [e.resource.id for page in only_pains for e in page.entry] == [created[1].id, created[2].id]
    assert only_pains[0].total == 2

    parameters = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueCode": "Practitioner,MedicationAdministration"}]}
    posted = Bundle.model_validate(client.reference("Patient", patient.id).execute("$everything", method="post", data=parameters))
    assert [e.resource.id for e in posted.entry] == [nurse.id, antiemetic.id]

    with pytest.raises(OperationOutcome) as refused:
        client.reference("Patient", patient.id).execute("$everything", method="get", params={"_type": "Spaceship"})
    assert "'Spaceship' is not a resource type this server serves" in str(refused.value)


def test_every_response_body_was_parsed_by_the_r4b_models():
    parsed = {r[3] for r in RESPONSES}
    assert {"CapabilityStatement", "Patient", "Observation", "Practitioner", "MedicationAdministration",
            "Bundle", "OperationOutcome"} <= parsed, parsed
    assert all(r[3] is not None or r[2] in (204, 304) for r in RESPONSES)
