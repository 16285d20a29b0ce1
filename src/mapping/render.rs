//! Rows → response XML with quick-xml: every value escaped and typed-formatted, NULLs omitted,
//! runs of rows grouped into nested elements (1:N). It must not run SQL or decide what no rows mean.

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use super::{Field, Group, PrefixedName, ResponseShape};
use crate::datasource::Rows;

type Row = Vec<Option<String>>;

/// Why rows could not be rendered (the admin's mapping or data is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the query returned no column `{0}`")]
    MissingColumn(String),
    #[error("column `{column}`: {why}, but [response] declares it as {ty}")]
    BadValue {
        column: String,
        ty: super::ValueType,
        why: String,
    },
}

/// Renders `rows` as the response element.
pub fn render(shape: &ResponseShape, rows: &Rows) -> Result<Vec<u8>, RenderError> {
    let mut w = Writer::new(Vec::with_capacity(256 + rows.rows.len() * 128));
    let root = shape.root.qualified();
    let decls: Vec<(String, &str)> = shape
        .namespaces
        .iter()
        .map(|(p, ns)| (format!("xmlns:{p}"), ns.as_str()))
        .collect();
    let start = BytesStart::new(root).with_attributes(decls.iter().map(|(k, v)| (k.as_str(), *v)));
    write(&mut w, Event::Start(start));
    if let Some(first) = rows.rows.first() {
        write_fields(&mut w, &shape.fields, &rows.columns, first)?;
    }
    if let Some(group) = &shape.each {
        let all: Vec<&Row> = rows.rows.iter().collect();
        write_group(&mut w, group, &rows.columns, &all)?;
    }
    write(&mut w, Event::End(BytesEnd::new(root)));
    Ok(w.into_inner())
}

/// Writing into a Vec cannot fail; quick-xml's Results are io-shaped only.
fn write(w: &mut Writer<Vec<u8>>, event: Event<'_>) {
    let _ = w.write_event(event);
}

fn column(columns: &[String], name: &str) -> Result<usize, RenderError> {
    columns
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .ok_or_else(|| RenderError::MissingColumn(name.to_string()))
}

fn write_fields(
    w: &mut Writer<Vec<u8>>,
    fields: &[Field],
    columns: &[String],
    row: &Row,
) -> Result<(), RenderError> {
    for f in fields {
        let i = column(columns, &f.column)?;
        let Some(Some(value)) = row.get(i) else {
            continue;
        };
        match f.ty {
            None => write_text(w, &f.element, value),
            Some(ty) => {
                let mut formatted = ty.format(value).map_err(|why| RenderError::BadValue {
                    column: f.column.clone(),
                    ty,
                    why,
                })?;
                if let Some(scale) = f.scale {
                    formatted = super::types::with_scale(&formatted, scale);
                }
                write_text(w, &f.element, &formatted);
            }
        }
    }
    Ok(())
}

fn write_group(
    w: &mut Writer<Vec<u8>>,
    group: &Group,
    columns: &[String],
    rows: &[&Row],
) -> Result<(), RenderError> {
    let name = group.element.qualified();
    let key = group
        .key
        .as_deref()
        .map(|k| column(columns, k))
        .transpose()?;
    let mut wrapped = false;
    let mut i = 0;
    while i < rows.len() {
        let run_end = match key {
            None => i + 1,
            Some(k) => {
                let value = rows[i].get(k);
                let mut j = i + 1;
                while j < rows.len() && rows[j].get(k) == value {
                    j += 1;
                }
                j
            }
        };
        let run = &rows[i..run_end];
        i = run_end;
        // A NULL key is a LEFT JOIN with nothing on the right: no element.
        if let Some(k) = key
            && matches!(run[0].get(k), None | Some(None))
        {
            continue;
        }
        if let Some(wrapper) = &group.wrapper
            && !wrapped
        {
            write(w, Event::Start(BytesStart::new(wrapper.qualified())));
            wrapped = true;
        }
        write(w, Event::Start(BytesStart::new(name)));
        write_fields(w, &group.fields, columns, run[0])?;
        if let Some(inner) = &group.each {
            write_group(w, inner, columns, run)?;
        }
        write(w, Event::End(BytesEnd::new(name)));
    }
    if let Some(wrapper) = group.wrapper.as_ref().filter(|_| wrapped) {
        write(w, Event::End(BytesEnd::new(wrapper.qualified())));
    }
    Ok(())
}

fn write_text(w: &mut Writer<Vec<u8>>, name: &PrefixedName, value: &str) {
    let q = name.qualified();
    write(w, Event::Start(BytesStart::new(q)));
    write(w, Event::Text(crate::xml::text(value)));
    write(w, Event::End(BytesEnd::new(q)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::ValueType;

    fn name(local: &str) -> PrefixedName {
        PrefixedName::new("f", local, "urn:f")
    }

    fn field(column: &str, local: &str, ty: Option<ValueType>) -> Field {
        Field {
            column: column.into(),
            element: name(local),
            ty,
            scale: None,
        }
    }

    #[test]
    fn runs_of_rows_nest_and_null_keys_and_values_are_left_out() {
        let shape = ResponseShape {
            root: name("R"),
            fields: vec![field("person", "Person", None)],
            each: Some(Box::new(Group {
                wrapper: Some(name("Jobs")),
                element: name("Job"),
                key: Some("job".into()),
                fields: vec![field("job", "Name", None)],
                each: Some(Box::new(Group {
                    wrapper: None,
                    element: name("Pay"),
                    key: None,
                    fields: vec![field("paid_on", "On", Some(ValueType::Date))],
                    each: None,
                })),
            })),
            namespaces: vec![("f".into(), "urn:f".into())],
        };
        let s = |v: &str| Some(v.to_string());
        let rows = Rows {
            columns: vec!["person".into(), "job".into(), "paid_on".into()],
            rows: vec![
                vec![s("A & B"), s("x"), s("2024-01-31 00:00:00")],
                vec![s("A & B"), s("x"), None],
                vec![s("A & B"), s("y"), s("2024-02-29")],
                vec![s("A & B"), None, None],
            ],
        };
        let xml = String::from_utf8(render(&shape, &rows).expect("renders")).expect("utf8");
        assert_eq!(
            xml,
            "<f:R xmlns:f=\"urn:f\"><f:Person>A &amp; B</f:Person><f:Jobs><f:Job><f:Name>x</f:Name><f:Pay><f:On>2024-01-31</f:On></f:Pay><f:Pay></f:Pay></f:Job><f:Job><f:Name>y</f:Name><f:Pay><f:On>2024-02-29</f:On></f:Pay></f:Job></f:Jobs></f:R>"
        );
    }

    #[test]
    fn a_wrapper_is_written_only_around_at_least_one_element() {
        let shape = ResponseShape {
            root: name("R"),
            fields: vec![],
            each: Some(Box::new(Group {
                wrapper: Some(name("Items")),
                element: name("Item"),
                key: Some("id".into()),
                fields: vec![field("id", "Id", None)],
                each: None,
            })),
            namespaces: vec![],
        };
        let nobody = Rows {
            columns: vec!["id".into()],
            rows: vec![vec![None]],
        };
        let xml = String::from_utf8(render(&shape, &nobody).expect("renders")).expect("utf8");
        assert_eq!(xml, "<f:R></f:R>");
    }

    #[test]
    fn a_value_that_is_not_its_declared_type_is_an_error() {
        let shape = ResponseShape {
            root: name("R"),
            fields: vec![field("d", "D", Some(ValueType::Date))],
            each: None,
            namespaces: vec![],
        };
        let rows = Rows {
            columns: vec!["d".into()],
            rows: vec![vec![Some("soon".into())]],
        };
        assert!(matches!(
            render(&shape, &rows),
            Err(RenderError::BadValue { .. })
        ));
    }
}
